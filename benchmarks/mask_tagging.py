"""Automatic mask tagging: precision/recall on a labelled set, the fit of DEFAULT_MODEL, and speed.

The labelled set (all from installed packages and tests/data, nothing downloaded):

- 33 colour faces: insightface's ``t1.jpg`` (6) and ``Tom_Hanks_54745.png`` (1), skimage's
  astronaut (1), and the 25 annotated faces of dlib's test photos (``tests/data/dlib-faces``,
  aligned from their annotated landmarks);
- 100 grayscale faces: skimage's ``lfw_subset()`` (25x25 LFW crops, upsampled to 100 px and
  detected with the bundled RetinaFace).

Every face is aligned to 112 px; its non-masked crop is a negative, the same crop with a
synthetic mask (:func:`ferdata.vision.masks.draw_mask`) a positive. There is no photo of a real masked
face in the set: the numbers measure how well the tagger finds ferdata-style synthetic masks,
including fabrics and shapes it was not fitted on, not real masks.

Protocol: the faces are split in two halves (alternating); a model is fitted on one half with
the built-in fabrics and tested on the other half with (a) the built-in fabrics under another
seed and (b) insightface's four mask photos, textures the model never saw; then the halves swap.
The final model is fitted on all faces, both texture sets, and printed as Python for
``ferdata/masks/tagging.py``.

Speed: scoring a crop (features + model) against decoding its PNG, the unavoidable baseline.

    python benchmarks/mask_tagging.py
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import insightface
import numpy as np
import skimage.data

from ferdata.align import find_faces
from ferdata.masks.tagging import FEATURES, fit_mask_model, mask_features, precision_recall
from ferdata.vision.align import template, warp
from ferdata.vision.decode import decode
from ferdata.vision.detectors import load_detector
from ferdata.vision.masks import builtin_textures, choose_style, draw_mask, load_textures

ROOT = Path(__file__).resolve().parent.parent
DLIB = ROOT / "tests" / "data" / "dlib-faces"
INSIGHTFACE_IMAGES = Path(insightface.__file__).parent / "data" / "images"


def _five(box: ET.Element) -> np.ndarray:
    parts = {int(p.get("name")): (float(p.get("x")), float(p.get("y"))) for p in box.iter("part")}
    mean = lambda ids: np.mean([parts[i] for i in ids], axis=0)
    return np.array([mean(range(36, 42)), mean(range(42, 48)), parts[30], parts[48], parts[54]])


def face_pool() -> tuple[list[np.ndarray], list[bool]]:
    """Aligned 112 px crops and whether each is a colour photo."""
    detector = load_detector("retinaface", device="cpu")
    crops, colour = [], []
    for name in ("t1.jpg", "Tom_Hanks_54745.png"):
        rgb = decode(INSIGHTFACE_IMAGES / name).rgb
        for face in find_faces(detector, rgb):
            crops.append(warp(rgb, face.landmarks)[0])
            colour.append(True)
    astronaut = skimage.data.astronaut()
    crops.append(warp(astronaut, find_faces(detector, astronaut)[0].landmarks)[0])
    colour.append(True)
    for image in ET.parse(DLIB / "testing_with_face_landmarks.xml").getroot().iter("image"):
        rgb = decode(DLIB / image.get("file")).rgb
        for box in image.iter("box"):
            crops.append(warp(rgb, _five(box))[0])
            colour.append(True)
    for gray in skimage.data.lfw_subset()[:100]:
        rgb = cv2.resize(np.repeat((gray * 255).astype(np.uint8)[:, :, None], 3, axis=2), (100, 100), interpolation=cv2.INTER_CUBIC)
        faces = find_faces(detector, rgb)
        if faces:
            crops.append(warp(rgb, faces[0].landmarks)[0])
            colour.append(False)
    return crops, colour


def labelled(crops, indices, textures, seed):
    """Features and truth: each face unmasked (0) and masked with ``textures`` (1)."""
    x, y = [], []
    for i in indices:
        style = choose_style(seed, f"face{i}", len(textures))
        x += [mask_features(crops[i]), mask_features(draw_mask(crops[i], template(112), textures[style.texture], style))]
        y += [0, 1]
    return np.array(x), np.array(y)


def main() -> None:
    crops, colour = face_pool()
    colour = np.array(colour)
    builtin = builtin_textures()
    photos = load_textures(sorted(INSIGHTFACE_IMAGES.glob("mask_*.jpg")))
    print(f"faces: {len(crops)} ({colour.sum()} colour, {(~colour).sum()} grayscale)")
    halves = [np.arange(len(crops))[0::2], np.arange(len(crops))[1::2]]

    results: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {"builtin": [], "photos": []}
    for train, test in (halves, halves[::-1]):
        x, y = labelled(crops, train, builtin, seed=1)
        model = fit_mask_model(x, y)
        for name, textures in (("builtin", builtin), ("photos", photos)):
            xt, yt = labelled(crops, test, textures, seed=2)
            results[name].append((model.score(xt), yt, np.repeat(colour[test], 2)))
    print("held-out faces, threshold 0.5: precision / recall (n masked + n unmasked)")
    for name, runs in results.items():
        scores = np.concatenate([r[0] for r in runs])
        truth = np.concatenate([r[1] for r in runs]).astype(bool)
        is_colour = np.concatenate([r[2] for r in runs])
        for subset, chosen in (("all", np.ones_like(truth)), ("colour", is_colour), ("grayscale", ~is_colour)):
            p, r = precision_recall(scores[chosen], truth[chosen])
            print(f"  {name:8s} {subset:9s} precision {p:.3f} recall {r:.3f} (n={chosen.sum()})")

    x1, y1 = labelled(crops, range(len(crops)), builtin, seed=1)
    x2, y2 = labelled(crops, range(len(crops)), photos, seed=3)
    final = fit_mask_model(np.vstack([x1, x2]), np.concatenate([y1, y2]),
                           trained_on="benchmarks/mask_tagging.py: 133 faces x (unmasked, built-in fabric, mask photo)")
    p, r = precision_recall(final.score(np.vstack([x1, x2])), np.concatenate([y1, y2]).astype(bool))
    print(f"final model on its own training set: precision {p:.3f} recall {r:.3f}")
    print("DEFAULT_MODEL = MaskModel(")
    for key in ("mean", "scale", "weights"):
        print(f"    {key}=({', '.join(f'{v:.6g}' for v in getattr(final, key))}),")
    print(f"    bias={final.bias:.6g},\n    trained_on={final.trained_on!r},\n)")

    # Speed: features + score per crop, against decoding the crop's PNG.
    pngs = [cv2.imencode(".png", c)[1].tobytes() for c in crops]
    start = time.perf_counter()
    decoded = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in pngs]
    decode_s = time.perf_counter() - start
    start = time.perf_counter()
    final.score(np.array([mask_features(c) for c in decoded]))
    score_s = time.perf_counter() - start
    print(f"scoring {len(crops)} crops: {score_s / decode_s:.2f}x the time of decoding their PNGs "
          f"({len(crops) / score_s:,.0f} crops/s features+score, {len(crops) / decode_s:,.0f} crops/s decode); "
          f"{len(FEATURES)} features")
    # Drawing: one synthetic mask against the same decode baseline.
    start = time.perf_counter()
    for i, c in enumerate(decoded):
        style = choose_style(0, f"face{i}", len(builtin))
        draw_mask(c, template(112), builtin[style.texture], style)
    draw_s = time.perf_counter() - start
    print(f"drawing {len(crops)} masks: {draw_s / decode_s:.2f}x the time of decoding their PNGs ({len(crops) / draw_s:,.0f} masks/s)")


if __name__ == "__main__":
    main()
