"""Detection recall and landmark error on dlib's annotated group photos (tests/data/dlib-faces)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from ferdata.align import find_faces
from ferdata.vision.decode import decode
from ferdata.vision.detectors import load_detector

DATA = Path(__file__).parent / "data" / "dlib-faces"


def five_points(box: ET.Element) -> np.ndarray:
    """The iBUG 68 points of one face mapped onto the detector's 5 (see the folder's README)."""
    parts = {int(p.get("name")): (float(p.get("x")), float(p.get("y"))) for p in box.iter("part")}
    mean = lambda ids: np.mean([parts[i] for i in ids], axis=0)  # noqa: E731
    return np.array([mean(range(36, 42)), mean(range(42, 48)), parts[30], parts[48], parts[54]])


def landmark_errors(detector, folder: Path = DATA) -> tuple[int, list[float], int]:
    """(faces annotated, normalised mean error of each matched face, detections matching none)."""
    annotated, errors, unmatched = 0, [], 0
    for xml in sorted(folder.glob("*_with_face_landmarks.xml")):
        for image in ET.parse(xml).getroot().iter("image"):
            faces = find_faces(detector, decode(folder / image.get("file")).rgb)
            used = set()
            for box in image.iter("box"):
                annotated += 1
                truth = five_points(box)
                eye_distance = np.linalg.norm(truth[1] - truth[0])
                if not faces:
                    continue
                gaps = [np.linalg.norm(f.landmarks[:2].mean(0) - truth[:2].mean(0)) for f in faces]
                best = int(np.argmin(gaps))
                if gaps[best] < eye_distance:  # the detection of this face, not of a neighbour
                    errors.append(float(np.linalg.norm(faces[best].landmarks - truth, axis=1).mean() / eye_distance))
                    used.add(best)
            unmatched += len(faces) - len(used)
    return annotated, errors, unmatched


@pytest.fixture(scope="module")
def detector():
    return load_detector("retinaface", device="cpu")


def test_all_annotated_faces_found_with_a_small_landmark_error(detector):
    annotated, errors, unmatched = landmark_errors(detector)
    assert annotated == 25
    assert len(errors) == 25  # every face found (faces here are 37 to 109 pixels wide)
    assert unmatched == 0
    # Measured 0.0890 (mean) and 0.142 (worst), before and after the tries for masked faces were
    # added (they run only where the first try finds nothing); a detector whose points are off by
    # a third of the eye distance, or mapped into the wrong frame, fails this.
    assert np.mean(errors) <= 0.089
    assert max(errors) < 0.2


def test_photo_of_dogs_has_no_face(detector):
    # The detector scores a dog's head 0.79 at the first try, just under that try's threshold of
    # 0.8; the later tries, at lower thresholds, see the photo smaller and find nothing. A change
    # of thresholds or tries that lets this animal through fails here.
    assert find_faces(detector, decode(DATA / "dogs.jpg").rgb) == []
