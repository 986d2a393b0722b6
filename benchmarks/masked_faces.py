"""Masked faces found: recall of the detection pipeline on masked and unmasked faces, and false
detections on images that hold no face, against the previous tries measured in the same run.

Three sets of tries are compared: ferdata 0.1.0's ("previous tries"), those of issue 13's first
round ("first round") and the current ones ("ferdata tries").

The sets (``benchmarks/face_sets.py``; real photos only, nothing downloaded):

- real masked photos: ``face-mask/with_mask`` (80 web photos: tight crops of 50-200 px, portraits,
  groups, patterned and respirator masks), as they are and cut FER2013-style (the face filling a
  48x48 grayscale or 112 px colour square, and a looser 128 px square);
- synthetic masks (``ferdata.vision.masks.draw_mask``, built-in fabrics and insightface's mask photos)
  on real faces (dlib's annotated photos, insightface's and scikit-image's faces,
  ``face-mask/without_mask``): the photo, and crops at 48 to 320 px with the face filling the
  frame (framing 1.0), or 1.5 and 2 times the face;
- the same faces unmasked;
- non-faces: noise, smooth noise, scikit-image's pictures and textures (whole and cropped), the 100
  non-face patches of ``lfw_subset``, dlib's photo of dogs.

A face counts as found when the face the pipeline keeps (the largest) is the right one: eye centre
within half the eye distance of the reference, eye distance within a factor of 2. Every set is
split in two halves by a hash of the source's name: ``tune`` (looked at while choosing the tries)
and ``held`` (not looked at); both are printed.

    python benchmarks/masked_faces.py            # needs /work/shared/data/face-mask or tests/data/face-mask
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import face_sets as fs  # noqa: E402

from ferdata.align import Attempt, attempts_for, detect_attempt  # noqa: E402
from ferdata.vision.detectors import load_detector  # noqa: E402


def previous_attempts(long_side: int, det_size: int = 640) -> tuple[Attempt, ...]:
    """The tries before this change (ferdata 0.1.0 as first released)."""
    if long_side <= 256:
        return (Attempt(0.25, 192, 0.8), Attempt(0.5, 256, 0.6), Attempt(0.0, 128, 0.4))
    return (Attempt(0.0, det_size, 0.8), Attempt(0.25, det_size // 2, 0.6), Attempt(0.5, 256, 0.4))


def first_round_attempts(long_side: int, det_size: int = 640) -> tuple[Attempt, ...]:
    """The tries of issue 13's first round (main before the 320 pixel try at 0.3 and the looser
    mirror check at 640 pixels), kept to measure this change against."""
    if long_side <= 256:
        return (
            Attempt(0.25, 192, 0.8),
            Attempt(0.0, 320, 0.4, flip=True, checked=True, min_eyes=0.1),
            Attempt(0.0, det_size, 0.8, checked=True, min_eyes=0.1, both_sides=True),
            Attempt(0.5, 256, 0.6),
            Attempt(0.0, 128, 0.4),
        )
    return attempts_for(long_side, det_size)


def detect(detector, rgb, ladder) -> tuple[list, int]:
    """The faces the first successful try finds, and how many tries ran."""
    tries = ladder(max(rgb.shape[:2]))
    for k, attempt in enumerate(tries, start=1):
        faces = detect_attempt(detector, [rgb], attempt)[0]
        if faces:
            return faces, k
    return [], len(tries)


def main() -> None:
    detector = load_detector("retinaface", device="cpu")
    started = time.perf_counter()
    samples = [
        *fs.real_masked_samples(detector),
        *fs.face_samples(detector, mask=True),
        *fs.face_samples(detector, mask=False),
        *fs.non_face_samples(),
    ]
    print(f"{len(samples)} images built in {time.perf_counter() - started:.0f} s")
    ladders = {"previous tries": previous_attempts, "first round": first_round_attempts, "ferdata tries": attempts_for}
    table: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    tries_run: dict[str, list[int]] = defaultdict(list)
    seconds: dict[str, float] = defaultdict(float)
    false_names: dict[str, list[str]] = defaultdict(list)
    for sample in samples:
        group = sample.kind.split("/")[0]
        for name, ladder in ladders.items():
            start = time.perf_counter()
            faces, k = detect(detector, sample.rgb, ladder)
            seconds[name] += time.perf_counter() - start
            tries_run[name, group].append(k)
            cell = table[name, group, sample.half]
            if group == "non-face":
                cell[0] += bool(faces)
                if faces:
                    false_names[name].append(sample.name)
            elif sample.points is not None:
                cell[0] += bool(faces) and fs.matches(max(faces, key=lambda f: f.area), sample.points)
            else:
                continue
            cell[1] += 1
    print(f"\n| set | half | {' | '.join(ladders)} |")
    print("|---|---|" + "---|" * len(ladders))
    for group in ("real-mask", "synthetic-mask", "unmasked", "non-face"):
        for half in ("tune", "held", "all"):
            cells = []
            for name in ladders:
                found, n = (
                    [sum(table[name, group, h][i] for h in ("tune", "held")) for i in (0, 1)]
                    if half == "all" else table[name, group, half]
                )
                what = "false detections" if group == "non-face" else "found"
                cells.append(f"{found}/{n} {what} ({100 * found / max(n, 1):.1f}%)")
            print(f"| {group} | {half} | {' | '.join(cells)} |")
    for group in ("real-mask", "synthetic-mask", "unmasked", "non-face"):
        means = [f"{name}: {sum(tries_run[name, group]) / max(1, len(tries_run[name, group])):.2f}" for name in ladders]
        print(f"mean tries per image, {group}: {', '.join(means)}")
    print(f"detection time, all images: {', '.join(f'{k} {v:.1f} s' for k, v in seconds.items())}; "
          f"ratio to previous {seconds['ferdata tries'] / seconds['previous tries']:.2f}, "
          f"to first round {seconds['ferdata tries'] / seconds['first round']:.2f}")
    for name, names in false_names.items():
        print(f"false detections with {name}: {names}")


if __name__ == "__main__":
    main()
