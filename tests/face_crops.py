"""FER2013-like registered face crops cut from real photos (no FER2013 pixels are available).

The faces: dlib's 25 annotated faces (``tests/data/dlib-faces``, annotated points), the six of
insightface's ``t1.jpg``, Tom Hanks, scikit-image's astronaut, and the unmasked photos of
``tests/data/face-mask/without_mask`` (points from the bundled detector on the photo). Each is cut
the way registered datasets are: a square centred on the face, the eyes about 0.35 of the side
apart and 0.35 from the top, the mouth at 0.72 (the geometry the detector finds on scikit-image's
``lfw_subset`` LFW crops), then grayscale at 48x48 like FER2013. ``framing`` below 1 cuts tighter
than that, so the face fills the frame edge to edge; ``blur`` is a Gaussian sigma in output pixels.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

import cv2
import numpy as np

DATA = Path(__file__).parent / "data"


def _five(box: ET.Element) -> np.ndarray:
    parts = {int(p.get("name")): (float(p.get("x")), float(p.get("y"))) for p in box.iter("part")}
    mean = lambda ids: np.mean([parts[i] for i in ids], axis=0)  # noqa: E731
    return np.array([mean(range(36, 42)), mean(range(42, 48)), parts[30], parts[48], parts[54]])


@cache
def real_faces() -> tuple[tuple[str, np.ndarray, np.ndarray], ...]:
    """(name, RGB photo, 5 points) for every real face the crops are cut from."""
    import insightface
    import skimage.data

    from ferdata.align import find_faces
    from ferdata.vision.decode import decode
    from ferdata.vision.detectors import load_detector

    detector = load_detector("retinaface", device="cpu")
    out = []
    folder = DATA / "dlib-faces"
    for image in ET.parse(folder / "testing_with_face_landmarks.xml").getroot().iter("image"):
        photo = decode(folder / image.get("file")).rgb
        out += [(f"{image.get('file')}#{k}", photo, _five(box)) for k, box in enumerate(image.iter("box"))]
    images = Path(insightface.__file__).parent / "data" / "images"
    t1 = decode(images / "t1.jpg").rgb
    out += [(f"t1#{k}", t1, f.landmarks) for k, f in enumerate(sorted(find_faces(detector, t1), key=lambda f: f.box[0]))]
    singles = [("hanks", decode(images / "Tom_Hanks_54745.png").rgb), ("astronaut", skimage.data.astronaut())]
    singles += [(p.stem, decode(p).rgb) for p in sorted((DATA / "face-mask" / "without_mask").glob("*.jpg"))]
    for name, photo in singles:
        faces = find_faces(detector, photo)
        out.append((name, photo, max(faces, key=lambda f: f.area).landmarks))
    return tuple(out)


def registered_crop(photo: np.ndarray, points: np.ndarray, *, side: int = 48, framing: float = 1.0,
                    blur: float = 0.0, gray: bool = True) -> np.ndarray:
    """The registered crop of the face at ``points`` (see the module's docstring)."""
    eyes, mouth = points[:2].mean(0), points[3:].mean(0)
    unit = max(float(np.linalg.norm(points[1] - points[0])), float(np.linalg.norm(mouth - eyes)) / 1.07)
    extent = framing * unit / 0.35
    centre = (eyes + mouth) / 2 - np.array([0.0, 0.03 * extent])
    scale = side / extent
    small = photo
    if scale < 0.5:  # area-average first, as a dataset's own resize would
        factor = 2 * scale
        small = cv2.resize(photo, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        centre, scale = centre * factor, 0.5
    matrix = np.array([[scale, 0, side / 2 - centre[0] * scale], [0, scale, side / 2 - centre[1] * scale]])
    crop = cv2.warpAffine(small, matrix, (side, side), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    if blur > 0:
        crop = cv2.GaussianBlur(crop, (0, 0), blur)
    return cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if gray else crop
