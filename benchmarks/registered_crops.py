"""Registered sources: the default mean landmark shape, and what alignment does with FER2013-like
crops (no real FER2013 pixels are available here).

1. **Default shape.** Where the bundled detector puts the 5 landmarks (x / width, y / height) on
   real registered face crops: scikit-image's ``lfw_subset()`` (100 LFW faces, 25x25, enlarged to
   48) and FER2013-style 48x48 grayscale crops of the real faces in ``tests/face_crops.py``.
   Each set's mean is made left-right symmetric (averaged with its mirror image: a registered
   dataset centres its faces, a set of 100 faces does not quite), and the two are averaged:
   that is ``ferdata.align.DEFAULT_REGISTERED_SHAPE``.
2. **FER2013-like rows.** ``align_manifest`` on a ``fer2013`` manifest of those crops, sharp,
   blurred (Gaussian sigma 1.5 and 3 pixels of the 48) and cut tighter so that the face fills the
   frame edge to edge (framing 0.8), plus the LFW faces: the share of rows ``aligned`` by
   detection, ``registered`` and ``no_face``; then the same rows as a source that is not
   registered (``registered=False``), as before this change.
3. With ``--sheet FILE.png``, the contact sheet of the FER2013 run (docs/align.md shows it).

    python benchmarks/registered_crops.py [--sheet docs/img/registered-contact-sheet.png]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import skimage.data

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from face_crops import real_faces, registered_crop  # noqa: E402

from ferdata.align import DEFAULT_REGISTERED_SHAPE, align_manifest, find_faces  # noqa: E402
from ferdata.schema import Manifest, new_frame  # noqa: E402
from ferdata.vision.contact import write_contact_sheet  # noqa: E402
from ferdata.vision.detectors import load_detector  # noqa: E402
from ferdata.workspace import Workspace  # noqa: E402


def symmetric(shape: np.ndarray) -> np.ndarray:
    mirror = shape[[1, 0, 2, 4, 3]].copy()
    mirror[:, 0] = 1.0 - mirror[:, 0]
    return (shape + mirror) / 2


def measured_shape(detector, crops: list[np.ndarray]) -> tuple[np.ndarray, int]:
    points = []
    for crop in crops:
        faces = find_faces(detector, np.repeat(crop[:, :, None], 3, axis=2))
        if faces:
            points.append(max(faces, key=lambda f: f.area).landmarks / np.array([crop.shape[1], crop.shape[0]]))
    return np.mean(points, axis=0), len(points)


def lfw_crops() -> list[np.ndarray]:
    return [cv2.resize((f * 255).astype(np.uint8), (48, 48), interpolation=cv2.INTER_CUBIC) for f in skimage.data.lfw_subset()[:100]]


def fer_rows() -> dict[str, dict[str, np.ndarray]]:
    kinds: dict[str, dict[str, np.ndarray]] = {"sharp": {}, "blur 1.5": {}, "blur 3": {}, "edge to edge": {}, "lfw": {}}
    for k, (_, photo, points) in enumerate(real_faces()):
        kinds["sharp"][f"sharp_{k:03d}.png"] = registered_crop(photo, points)
        kinds["blur 1.5"][f"blur15_{k:03d}.png"] = registered_crop(photo, points, blur=1.5)
        kinds["blur 3"][f"blur3_{k:03d}.png"] = registered_crop(photo, points, blur=3.0)
        kinds["edge to edge"][f"filled_{k:03d}.png"] = registered_crop(photo, points, framing=0.8)
    kinds["lfw"] = {f"lfw_{k:03d}.png": crop for k, crop in enumerate(lfw_crops())}
    return kinds


def run(detector, kinds, registered: bool, root: Path):
    ws = Workspace.resolve(root)
    folder = ws.originals_dir("fer2013")
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    labels = ("happy", "sad", "surprise")
    for kind, images in kinds.items():
        for name, pixels in images.items():
            cv2.imwrite(str(folder / name), pixels)
            rows.append(dict(image_id=name, dataset="fer2013", source=name, sha256=f"{len(rows):064x}",
                             label_original=labels[len(rows) % 3], label=labels[len(rows) % 3],
                             original_path=f"originals/fer2013/{name}", width=0, height=0))
    manifest = Manifest("fer2013", new_frame(rows), provenance={})
    result, report = align_manifest(ws, manifest, detector=detector, registered=registered, resume=False)
    return ws, result, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sheet", type=Path, help="write the FER2013 run's contact sheet here")
    args = parser.parse_args()
    detector = load_detector("retinaface", device="cpu")
    kinds = fer_rows()

    print("## default mean landmark shape (x/width, y/height)")
    lfw, n_lfw = measured_shape(detector, lfw_crops())
    fer, n_fer = measured_shape(detector, list(kinds["sharp"].values()))
    for name, shape, n in (("lfw_subset", lfw, n_lfw), ("FER2013-like sharp crops", fer, n_fer)):
        print(f"{name} ({n} faces found): {np.round(shape, 4).tolist()}")
        print(f"  symmetric: {np.round(symmetric(shape), 4).tolist()}")
    default = (symmetric(lfw) + symmetric(fer)) / 2
    print(f"average of the two symmetric shapes: {np.round(default, 4).tolist()}")
    print(f"ferdata.align.DEFAULT_REGISTERED_SHAPE: {DEFAULT_REGISTERED_SHAPE.tolist()}")
    print(f"largest difference: {np.abs(default - DEFAULT_REGISTERED_SHAPE).max():.4f}")

    with tempfile.TemporaryDirectory() as tmp:
        for registered in (True, False):
            ws, result, report = run(detector, kinds, registered, Path(tmp) / str(registered))
            frame = result.frame
            print(f"\n## FER2013-like rows, registered={registered} ({report.seconds:.1f} s, {len(frame)} rows)")
            print("| rows | n | aligned | registered | no_face |")
            print("|---|---|---|---|---|")
            for kind, images in [*kinds.items(), ("all", {n: None for v in kinds.values() for n in v})]:
                statuses = frame.loc[frame["image_id"].isin(list(images)), "face_status"]
                share = lambda s: f"{100 * (statuses == s).mean():.1f}%"  # noqa: E731
                print(f"| {kind} | {len(statuses)} | {share('aligned')} | {share('registered')} | {share('no_face')} |")
            if registered:
                shape = result.provenance["align"]["mean_shape"]
                print(f"mean shape of this run ({shape['rows']} aligned rows): {shape['points']}")
                if args.sheet:
                    write_contact_sheet(ws, result, args.sheet, per_group=12, tile=72)
                    print(f"contact sheet: {args.sheet}")


if __name__ == "__main__":
    main()
