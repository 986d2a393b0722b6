"""Leakage check: signatures, candidates, verification on real faces, undecidable pairs, folds, identity model."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from ferdata import leakage
from ferdata.cli import app
from ferdata.errors import LeakageFound, UsageError
from ferdata.folds import make_folds
from ferdata.leakage import check_leakage, hamming, near_pairs, phash_files, row_hashes
from ferdata.schema import BASIC_LABELS, Manifest, new_frame
from ferdata.workspace import Workspace

# ----------------------------------------------------------------------------- images


def face_like(seed: int, rgb: bool = False) -> np.ndarray:
    """A 48x48 image with plenty of low-frequency structure (a random 12x12 pattern upsampled)."""
    rng = np.random.default_rng(seed)
    shape = (12, 12, 3) if rgb else (12, 12)
    small = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
    return np.asarray(small.resize((48, 48), Image.Resampling.BICUBIC))


def build_workspace(root: Path, images: list[tuple[dict, np.ndarray]], dataset: str = "fer2013") -> Workspace:
    """Write each image as a PNG under originals/ and a manifest row pointing at it."""
    ws = Workspace.resolve(root)
    rows = []
    for fields, pixels in images:
        rel = f"originals/{dataset}/{fields['image_id']}.png"
        path = ws.absolute(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        label = fields.pop("label", "happy")
        rows.append(
            dict(
                dataset=dataset,
                source=fields["image_id"],
                sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                label_original=label,
                label=label,
                original_path=rel,
                width=48,
                height=48,
                **fields,
            )
        )
    ws.save(Manifest(dataset, new_frame(rows)))
    return ws


# ----------------------------------------------------------------------------- pHash


def test_phash_matches_imagehash_on_a_real_face() -> None:
    spec = importlib.util.find_spec("insightface")
    assert spec is not None, "insightface (a test dependency) ships the sample face"
    face = Path(spec.submodule_search_locations[0]) / "data" / "images" / "Tom_Hanks_54745.png"
    hashes, ok = phash_files([face], workers=1)
    assert ok.tolist() == [True]
    # the value imagehash.phash gives for this file (computed once with imagehash 4.3.2)
    assert f"{int(hashes[0]):016x}" == "8b9c49e36c690fc3"


def test_phash_unreadable_file(tmp_path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    _hashes, ok = phash_files([bad, tmp_path / "missing.png"], workers=1)
    assert ok.tolist() == [False, False]


def test_parallel_hashes_equal_serial(tmp_path) -> None:
    paths = []
    for i in range(300):  # more than one chunk, so the process pool really runs
        path = tmp_path / f"{i}.png"
        Image.fromarray(face_like(i)).save(path)
        paths.append(path)
    serial, ok1 = phash_files(paths, workers=1)
    parallel, ok2 = phash_files(paths, workers=2)
    assert ok1.all() and ok2.all()
    assert np.array_equal(serial, parallel)


@settings(max_examples=60, deadline=None)
@given(
    seeds=st.lists(st.integers(0, 2**63 - 1), min_size=2, max_size=60, unique=True),
    flips=st.lists(st.tuples(st.integers(0, 59), st.integers(0, 63)), max_size=80),
    max_distance=st.integers(0, 12),
)
def test_near_pairs_equals_brute_force(seeds, flips, max_distance) -> None:
    hashes = np.array(seeds, dtype=np.uint64)
    # derive close variants by flipping bits, then keep distinct values
    extra = [hashes[i % len(hashes)] ^ np.uint64(1 << bit) for i, bit in flips]
    hashes = np.unique(np.concatenate([hashes, np.array(extra, dtype=np.uint64)]))
    i, j, d = near_pairs(hashes, max_distance)
    dist = hamming(hashes[:, None], hashes[None, :])
    bi, bj = np.nonzero(np.triu(dist <= max_distance, 1))
    assert sorted(zip(i.tolist(), j.tolist())) == sorted(zip(bi.tolist(), bj.tolist()))
    assert np.array_equal(d, dist[i, j])


# ----------------------------------------------------------------------------- real faces and known copies

FACES = Path(__file__).parent / "data" / "leakage-faces"


def photo(i: int) -> Image.Image:
    paths = sorted(FACES.glob("*.jpg"))
    return Image.open(paths[i]).convert("L")


def fer_view(img: Image.Image, dx: float = 0.0, dy: float = 0.0, fraction: float = 0.88, size: int = 48) -> np.ndarray:
    """A FER2013-like 48x48 face: the central ``fraction`` of the photo, moved by (dx, dy) output pixels."""
    w, h = img.size
    side = fraction * min(w, h)
    step = side / size
    x1, y1 = (w - side) / 2 + dx * step, (h - side) / 2 + dy * step
    return np.asarray(img.resize((size, size), Image.Resampling.LANCZOS, box=(x1, y1, x1 + side, y1 + side)))


def jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    import io

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))


def watermark(pixels: np.ndarray) -> np.ndarray:
    from PIL import ImageDraw, ImageFont

    img = Image.fromarray(pixels).convert("RGBA")
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).text((2, 18), "stock", fill=(255, 255, 255, 110), font=ImageFont.load_default(size=11))
    return np.asarray(Image.alpha_composite(img, layer).convert("L"))


def blurred(pixels: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(pixels, (0, 0), sigma)


def known_copies(i: int) -> dict[str, np.ndarray]:
    face = photo(i)
    base = fer_view(face)
    return {
        "shift": fer_view(face, dx=3, dy=-2),
        "crop": fer_view(face, fraction=0.88 * 0.9, dx=1),
        "jpeg": jpeg(base, 30),
        "mirror": base[:, ::-1].copy(),
        "gamma": np.clip(255 * (base / 255.0) ** 0.6, 0, 255).astype(np.uint8),
        "watermark": watermark(base),
        "blur-1": blurred(base, 1.0),
    }


def test_verification_accepts_known_copies_of_real_faces_and_rejects_other_people() -> None:
    bases, copies, names = [], [], []
    for i in range(4):
        for name, image in known_copies(i).items():
            bases.append(fer_view(photo(i)))
            copies.append(image)
            names.append(name)
    strangers = [fer_view(photo(i)) for i in range(4, 24)]  # other people, same pose and framing
    sig = leakage.Signatures.from_images(bases + copies + strangers)
    detail, contrast = leakage.detail_and_contrast(sig.thumbs)
    assert (leakage.undecidable_reason(detail, contrast, sig.width, sig.height) == "").all()
    n = len(bases)
    verdict = leakage.verify_pairs(sig.thumbs, np.arange(n), np.arange(n, 2 * n), detail)
    assert (verdict["similarity"] >= leakage.DEFAULT_SIMILARITY).all(), dict(zip(names, verdict["similarity"].round(3)))
    assert (verdict["ncc"] >= leakage.NCC_FLOOR).all()
    assert verdict["mirror"].to_numpy()[[k for k, name in enumerate(names) if name == "mirror"]].all()
    # every pair of two different people, both orientations searched: none reaches the threshold
    a, b = np.triu_indices(len(strangers), 1)
    other = leakage.verify_pairs(sig.thumbs, a + 2 * n, b + 2 * n, detail)
    assert other["similarity"].fillna(0).max() < leakage.DEFAULT_SIMILARITY


def test_blurred_flat_and_tiny_images_have_a_reason() -> None:
    face = fer_view(photo(0))
    images = [face, blurred(face, 4.0), np.full((48, 48), 120, np.uint8) + (face // 40), np.asarray(Image.fromarray(face).resize((12, 12)))]
    sig = leakage.Signatures.from_images(images)
    detail, contrast = leakage.detail_and_contrast(sig.thumbs)
    assert leakage.undecidable_reason(detail, contrast, sig.width, sig.height).tolist() == ["", "blurred", "flat", "tiny"]


# ----------------------------------------------------------------------------- planted leaks in a workspace


def test_find_leaks_pairs_rows_by_kind() -> None:
    # a and c: same bytes; b: a verified near copy of a; d: undecidable with c; e: removed, near a
    frame = new_frame([
        {"image_id": x, "dataset": "fer2013", "source": x, "sha256": sha, "label_original": "sad", "label": label,
         "label_status": "original" if label else "removed", "original_path": x, "width": 1, "height": 1, "fold": fold}
        for x, sha, fold, label in [
            ("a", "s1", 0, "sad"), ("b", "s2", 1, "sad"), ("c", "s1", 1, "sad"), ("d", "s3", 2, "sad"), ("e", "s4", 1, None),
        ]
    ])
    evidence = leakage.Evidence(
        exact_key=np.array([0, 1, 0, 2, 3]),
        node=np.array([0, 1, 0, 3, -1]),
        pairs=pd.DataFrame({"a": [0, 0], "b": [1, 4], "kind": "near", "similarity": [0.97, 0.99], "signature": "phash"}),
        undecidable=pd.DataFrame({"a": [0], "b": [3], "kind": "undecidable", "similarity": [0.93], "signature": "lowfreq",
                                  "reason": "blurred"}),
    )
    leaks, undecidable = leakage.find_leaks(frame, evidence)
    got = {(r.kind, r.image_id_a, r.image_id_b, r.signature) for r in leaks.itertuples()}
    # b is near a (fold 0); c holds a's bytes in fold 1, the same fold as b: no leak between them
    assert got == {("exact", "a", "c", "sha256"), ("near", "a", "b", "phash")}
    assert leaks["across"].eq("fold").all()
    # the undecidable pair is reported apart, for both places of a's file, never as a leak
    assert {(r.image_id_a, r.image_id_b, r.reason) for r in undecidable.itertuples()} == {("a", "d", "blurred"), ("c", "d", "blurred")}
    # verified pairs (and exact bytes) join clusters; undecidable ones do not
    clusters = evidence.clusters()
    assert clusters[0] == clusters[1] == clusters[2] and clusters[3] != clusters[0]


def fer_workspace(root: Path) -> Workspace:
    """20 real faces in train, 8 test images: 5 altered copies of train faces, an exact copy, a
    heavily blurred copy (undecidable) and a face seen nowhere else."""
    images = []
    for i in range(20):
        images.append(({"image_id": f"train-{i:02d}", "split": "train", "label": BASIC_LABELS[i % 7]}, fer_view(photo(i))))
    planted = [
        ("test-shift", known_copies(1)["shift"]),
        ("test-crop", known_copies(2)["crop"]),
        ("test-jpeg", known_copies(3)["jpeg"]),
        ("test-mirror", known_copies(4)["mirror"]),
        ("test-watermark", known_copies(5)["watermark"]),
        ("test-exact", fer_view(photo(6))),
        ("test-blurred", blurred(fer_view(photo(7)), 4.0)),
        ("test-stranger", fer_view(photo(20))),
    ]
    for k, (name, pixels) in enumerate(planted):
        images.append(({"image_id": name, "split": "test", "label": BASIC_LABELS[k % 7]}, pixels))
    return build_workspace(root, images)


def leak_set(report) -> set[tuple[str, str, str, str]]:
    return {(r.kind, r.across, r.image_id_a, r.image_id_b) for r in report.leaks.itertuples()}


EXPECTED_LEAKS = {
    ("near", "test-shift", "train-01"), ("near", "test-crop", "train-02"), ("near", "test-jpeg", "train-03"),
    ("near", "test-mirror", "train-04"), ("near", "test-watermark", "train-05"), ("exact", "test-exact", "train-06"),
}


@pytest.fixture
def fer_ws(tmp_path) -> Workspace:
    return fer_workspace(tmp_path / "ws")


def test_planted_copies_across_fer2013_splits_are_verified(fer_ws: Workspace) -> None:
    report = check_leakage(fer_ws, workers=1)
    assert {(r.kind, r.image_id_a, r.image_id_b) for r in report.leaks.itertuples()} == EXPECTED_LEAKS
    assert report.leaks["across"].eq("split").all()
    near = report.leaks[report.leaks["kind"] == "near"]
    assert (near["similarity"] >= leakage.DEFAULT_SIMILARITY).all()
    assert near["signature"].str.match(r"(phash|lowfreq)").all()
    assert near.set_index("image_id_a").loc["test-mirror", "signature"].endswith("mirror")
    # the heavily blurred copy cannot be told from the other faces it resembles: undecidable, apart
    assert set(report.undecidable["image_id_a"]) | set(report.undecidable["image_id_b"]) >= {"test-blurred"}
    assert set(report.undecidable["reason"]) == {"blurred"}
    assert "test-blurred" not in set(report.leaks["image_id_a"]) | set(report.leaks["image_id_b"])
    assert "test-stranger" not in set(report.leaks["image_id_a"]) | set(report.leaks["image_id_b"])
    on_disk = pd.read_csv(fer_ws.root / "tables/fer2013/leakage.csv")
    assert list(on_disk.columns) == leakage.REPORT_COLUMNS and len(on_disk) == len(EXPECTED_LEAKS)
    apart = pd.read_csv(fer_ws.root / "tables/fer2013/leakage_undecidable.csv")
    assert list(apart.columns) == leakage.UNDECIDABLE_COLUMNS and len(apart) == len(report.undecidable)
    assert report.summary()["undecidable"] == len(report.undecidable) > 0


def test_strict_fails_on_verified_leaks_only(fer_ws: Workspace) -> None:
    with pytest.raises(LeakageFound) as caught:
        check_leakage(fer_ws, strict=True, workers=1)
    assert len(caught.value.report.leaks) == len(EXPECTED_LEAKS)
    # drop the verified copies: only the undecidable blurred copy remains, and --strict passes
    manifest = fer_ws.load()
    copies = {a for _, a, _ in EXPECTED_LEAKS}  # the test side of each verified pair
    manifest.frame = manifest.frame[~manifest.frame["image_id"].isin(copies)].reset_index(drop=True)
    fer_ws.save(manifest)
    report = check_leakage(fer_ws, strict=True, workers=1)
    assert not report.found and len(report.undecidable) > 0
    runner = CliRunner()
    assert runner.invoke(app, ["check-leakage", "--strict", "--workers", "1", "-w", str(fer_ws.root)]).exit_code == 0


def test_folds_keep_verified_copies_together_and_never_join_undecidable_pairs(fer_ws: Workspace) -> None:
    manifest = fer_ws.load()
    manifest.frame["split"] = "train"  # fold everything: copies must share a fold
    fer_ws.save(manifest)
    for seed in range(3):
        result = make_folds(fer_ws, 4, seed=seed, workers=1)
        frame = fer_ws.load().frame.set_index("image_id")
        for _, a, b in EXPECTED_LEAKS:
            assert frame.loc[a, "fold"] == frame.loc[b, "fold"], (a, b)
        assert not result.leakage.found
    # 28 images, 6 verified copies: 22 groups; the undecidable blurred copy stays alone
    assert result.provenance["groups"] == 22


def test_report_shows_full_ids_when_piped(tmp_path) -> None:
    long_a = "train/" + "a" * 70 + "/PublicTest_0001.png"
    long_b = "test/" + "b" * 70 + "/PrivateTest_0002.png"
    face = fer_view(photo(0))
    images = [({"image_id": long_a, "split": "train"}, face), ({"image_id": long_b, "split": "test"}, jpeg(face, 40))]
    images += [({"image_id": f"other-{i}", "split": "train"}, fer_view(photo(i))) for i in range(1, 6)]
    ws = build_workspace(tmp_path / "ws", images)
    result = CliRunner().invoke(app, ["check-leakage", "--workers", "1", "-w", str(ws.root)])
    assert result.exit_code == 0, result.output
    assert long_a in result.output and long_b in result.output
    assert "near\tsplit\t" in result.output  # tab-separated rows when piped


def test_duplicate_across_folds_is_caught_and_strict_fails(tmp_path) -> None:
    # two subjects with the same photo (one re-encoded); the folds (set by hand) put them apart
    images = []
    for s in range(4):
        for i in range(3):
            pixels = fer_view(photo(3 * s + i))
            if (s, i) == (1, 1):
                pixels = jpeg(fer_view(photo(0)), 50)  # a copy of subject 0's first image
            images.append(({"image_id": f"s{s}-{i}", "subject_id": f"s{s}", "fold": s % 2}, pixels))
    ws = build_workspace(tmp_path / "ws", images, dataset="msd-e")
    with pytest.raises(LeakageFound) as caught:
        check_leakage(ws, strict=True, workers=1)
    assert {(r.kind, r.across, r.image_id_a, r.image_id_b) for r in caught.value.report.leaks.itertuples()} == {
        ("near", "fold", "s0-0", "s1-1")
    }
    assert (ws.root / "tables/msd-e/leakage.csv").exists()  # written before failing
    runner = CliRunner()
    assert runner.invoke(app, ["check-leakage", "--strict", "--workers", "1", "-w", str(ws.root)]).exit_code == 1
    assert runner.invoke(app, ["check-leakage", "--workers", "1", "-w", str(ws.root)]).exit_code == 0
    # removed rows are never trained on: no leak through them
    manifest = ws.load()
    manifest.frame.loc[manifest.frame["image_id"] == "s1-1", ["label", "label_status"]] = [None, "removed"]
    ws.save(manifest)
    assert not check_leakage(ws, workers=1).found


def test_exact_duplicate_between_subjects_merges_them_into_one_fold(tmp_path) -> None:
    images = []
    for s in range(6):
        for i in range(2):
            pixels = face_like(777) if (s, i) in {(1, 0), (4, 1)} else face_like(10 * s + i)
            images.append(({"image_id": f"s{s}-{i}", "subject_id": f"s{s}"}, pixels))
    ws = build_workspace(tmp_path / "ws", images, dataset="msd-e")
    for seed in range(4):
        result = make_folds(ws, 3, seed=seed, workers=1)
        frame = ws.load().frame.set_index("image_id")
        assert frame.loc["s1-0", "fold"] == frame.loc["s4-1", "fold"]
        assert result.provenance["groups"] == 5 and not result.leakage.found


def test_bad_options_are_usage_errors(fer_ws: Workspace) -> None:
    with pytest.raises(UsageError, match="hamming must be between 0 and 32"):
        check_leakage(fer_ws, hamming=40)
    with pytest.raises(UsageError, match="similarity must be in"):
        check_leakage(fer_ws, similarity=1.5)
    result = CliRunner().invoke(app, ["check-leakage", "--similarity", "2", "-w", str(fer_ws.root)])
    assert result.exit_code == 2


# ----------------------------------------------------------------------------- cache


def test_signatures_are_cached_by_sha256(fer_ws: Workspace, monkeypatch) -> None:
    calls: list[int] = []
    real = leakage._signature_chunk

    def counting(paths):
        calls.append(len(paths))
        return real(paths)

    monkeypatch.setattr(leakage, "_signature_chunk", counting)
    frame = fer_ws.load().frame
    first = row_hashes(fer_ws, "fer2013", frame, workers=1)
    assert sum(calls) == 27  # 28 rows, one exact copy read once
    cache = pd.read_parquet(fer_ws.root / "tables/fer2013/signatures.parquet")
    assert len(cache) == 27 and cache["sha256"].is_unique
    again = row_hashes(fer_ws, "fer2013", frame, workers=1)
    assert sum(calls) == 27 and again.equals(first)
    # a file rewritten in place (e.g. a new alignment) is read again, alone
    path = fer_ws.absolute(frame["original_path"].iloc[10])
    Image.fromarray(face_like(999)).save(path)
    changed = row_hashes(fer_ws, "fer2013", frame, workers=1)
    assert sum(calls) == 28
    assert changed.iloc[10] != first.iloc[10] and changed.drop(index=10).equals(first.drop(index=10))


# ----------------------------------------------------------------------------- identity model


def red_channel_model(path: Path, size: int = 16, dim: int = 32) -> Path:
    """A tiny 'face-recognition' ONNX model: a fixed projection of the red channel to ``dim`` numbers.

    Its columns sum to zero, so overall brightness does not count. Two images with the same red
    channel get the same embedding whatever their other channels: 'the same person' to this model,
    while their grayscale pHashes differ widely.
    """
    onnx = pytest.importorskip("onnx", reason="the onnx package builds the test identity model")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = np.zeros((3 * size * size, dim), dtype=np.float32)
    red = rng.normal(size=(size * size, dim)).astype(np.float32)
    weights[: size * size] = red - red.mean(axis=0)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "weights"], ["embedding"]),
        ],
        "red_projection",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dim])],
        [numpy_helper.from_array(weights, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture
def identity_ws(tmp_path) -> tuple[Workspace, Path]:
    images = []
    for i in range(8):
        pixels = face_like(100 + i, rgb=True)
        if i == 5:  # same red channel as image 0, other channels new
            other = face_like(500, rgb=True)
            pixels = np.dstack([face_like(100, rgb=True)[..., 0], other[..., 1], other[..., 2]])
        images.append(({"image_id": f"img{i}", "fold": i % 2, "label": BASIC_LABELS[i % 7]}, pixels))
    ws = build_workspace(tmp_path / "ws", images, dataset="imagefolder")
    return ws, red_channel_model(tmp_path / "identity.onnx")


def test_identity_model_reports_same_person_across_folds(identity_ws) -> None:
    ws, model = identity_ws
    without = check_leakage(ws, workers=1)
    assert not without.found  # pHash does not see it
    report = check_leakage(ws, identity_model=model, identity_threshold=0.9, workers=1)
    assert leak_set(report) == {("identity", "fold", "img0", "img5")}
    assert report.leaks["similarity"].iloc[0] == pytest.approx(1.0, abs=1e-4)  # cosine similarity
    assert report.leaks["signature"].iloc[0] == "identity-model"
    assert report.summary()["identity_model"] == str(model)


def test_identity_clusters_group_images_before_folding(identity_ws) -> None:
    ws, model = identity_ws
    for seed in range(3):
        result = make_folds(ws, 2, seed=seed, identity_model=model, identity_threshold=0.9, workers=1)
        frame = ws.load().frame.set_index("image_id")
        assert frame.loc["img0", "fold"] == frame.loc["img5", "fold"]
        assert not result.leakage.found and result.provenance["groups"] == 7


def test_bad_identity_model_is_a_usage_error(identity_ws, tmp_path) -> None:
    ws, _ = identity_ws
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not a model")
    with pytest.raises(UsageError, match="cannot load identity model"):
        check_leakage(ws, identity_model=bogus, workers=1)


def test_check_verifies_only_pairs_that_could_leak(fer_ws: Workspace) -> None:
    frame = fer_ws.load().frame.reset_index(drop=True)
    full, full_counts = leakage.gather_evidence(fer_ws, "fer2013", frame, workers=1)
    across, across_counts = leakage.gather_evidence(fer_ws, "fer2013", frame, across_only=True, workers=1)
    assert across_counts["candidates"] < full_counts["candidates"]  # train-train pairs are not verified
    leaks_full, undecided_full = leakage.find_leaks(frame, full)
    leaks_across, undecided_across = leakage.find_leaks(frame, across)
    assert leaks_full.equals(leaks_across) and undecided_full.equals(undecided_across)
