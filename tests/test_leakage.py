"""Leakage check: pHash, near-duplicate search, planted leaks across splits and folds, identity model."""

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


def near_copy(pixels: np.ndarray, seed: int) -> np.ndarray:
    """Brighter, noisy: the kind of copy a re-upload produces."""
    noise = np.random.default_rng(seed).integers(-6, 7, pixels.shape)
    return np.clip(pixels.astype(int) + 8 + noise, 0, 255).astype(np.uint8)


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


# FER2013's Usage column maps to split: Training -> train, PublicTest -> val, PrivateTest -> test
FER_SPLITS = ["train"] * 20 + ["val"] * 5 + ["test"] * 5


@pytest.fixture
def fer_ws(tmp_path) -> Workspace:
    """30 distinct faces, with planted duplicates: train-3 == test-27 (exact), val-22 ~ train-5 (near),
    and train-1 == train-0 (exact, same split: not a leak until folds split them)."""
    images = []
    for i, split in enumerate(FER_SPLITS):
        pixels = face_like(i)
        if i == 27:
            pixels = face_like(3)
        elif i == 22:
            pixels = near_copy(face_like(5), seed=22)
        elif i == 1:
            pixels = face_like(0)
        images.append(({"image_id": f"{split}-{i}", "split": split, "label": BASIC_LABELS[i % 7]}, pixels))
    return build_workspace(tmp_path / "ws", images)


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


# ----------------------------------------------------------------------------- planted leaks


def test_find_leaks_pairs_rows_by_kind() -> None:
    # a and c: same bytes; b: other bytes, same pHash; d: pHash 3 bits away from a's; e: removed
    frame = new_frame([
        {"image_id": x, "dataset": "fer2013", "source": x, "sha256": sha, "label_original": "sad", "label": label,
             "label_status": "original" if label else "removed", "original_path": x, "width": 1, "height": 1, "fold": fold}
        for x, sha, fold, label in [
            ("a", "s1", 0, "sad"), ("b", "s2", 0, "sad"), ("c", "s1", 1, "sad"), ("d", "s3", 2, "sad"), ("e", "s4", 1, None),
        ]
    ])
    evidence = leakage.Evidence(
        exact_key=np.array([0, 1, 0, 2, 3]),
        hash_key=np.array([0, 0, 0, 1, 1]),
        near_a=np.array([0]), near_b=np.array([1]), near_distance=np.array([3]),
    )
    got = {(r.kind, r.image_id_a, r.image_id_b, r.distance) for r in leakage.find_leaks(frame, evidence).itertuples()}
    # d is near a and c (fold 0 and fold 1 each represented once), never near the removed e
    assert got == {("exact", "a", "c", 0.0), ("near", "b", "c", 0.0), ("near", "a", "d", 3.0), ("near", "c", "d", 3.0)}
    assert leakage.find_leaks(frame, evidence)["across"].eq("fold").all()


def leak_set(report) -> set[tuple[str, str, str, str]]:
    return {(r.kind, r.across, r.image_id_a, r.image_id_b) for r in report.leaks.itertuples()}


def test_planted_duplicates_across_fer2013_splits_are_caught(fer_ws: Workspace) -> None:
    report = check_leakage(fer_ws, workers=1)
    assert leak_set(report) == {
        ("exact", "split", "train-3", "test-27"),
        ("near", "split", "train-5", "val-22"),
    }
    near = report.leaks[report.leaks["kind"] == "near"].iloc[0]
    assert 0 <= near["distance"] <= 6
    assert report.rows_checked == 30 and report.hashed == 30
    on_disk = pd.read_csv(fer_ws.root / "tables/fer2013/leakage.csv")
    assert len(on_disk) == 2 and set(on_disk["image_id_b"]) == {"test-27", "val-22"}
    # the near copy is beyond a threshold of 0 bits unless it hashes identically
    strict_report = check_leakage(fer_ws, hamming=0, workers=1)
    expected_near = int(near["distance"]) == 0
    assert (("near", "split", "train-5", "val-22") in leak_set(strict_report)) == expected_near


def test_folds_within_train_keep_duplicates_together_and_report_split_leaks(fer_ws: Workspace) -> None:
    result = make_folds(fer_ws, 3, within_split="train", seed=0, workers=1)
    frame = fer_ws.load().frame.set_index("image_id")
    assert frame.loc["train-0", "fold"] == frame.loc["train-1", "fold"]  # exact duplicates, one fold
    assert frame.loc[frame["split"] != "train", "fold"].isna().all()
    assert frame.loc[frame["split"] == "train", "fold"].notna().all()
    assert result.provenance["groups"] == 19  # 20 train images, two of them identical
    assert result.provenance["groups_from"]["duplicate_cluster"] == 20
    assert {(k, a) for k, a, *_ in leak_set(result.leakage)} == {("exact", "split"), ("near", "split")}


def test_duplicate_across_folds_is_caught_and_strict_fails(tmp_path) -> None:
    # two subjects with a near-identical photo; the folds (set by hand) put them apart
    images = []
    for s in range(4):
        for i in range(3):
            pixels = face_like(10 * s + i)
            if (s, i) == (1, 1):
                pixels = near_copy(face_like(0), seed=1)  # near copy of subject 0's first image
            images.append(({"image_id": f"s{s}-{i}", "subject_id": f"s{s}", "fold": s % 2}, pixels))
    ws = build_workspace(tmp_path / "ws", images, dataset="msd-e")
    with pytest.raises(LeakageFound) as caught:
        check_leakage(ws, strict=True, workers=1)
    assert leak_set(caught.value.report) == {("near", "fold", "s0-0", "s1-1")}
    assert (ws.root / "tables/msd-e/leakage.csv").exists()  # written before failing
    # through the CLI: exit 1 with --strict, 0 without
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


# ----------------------------------------------------------------------------- cache


def test_hashes_are_cached_by_sha256(fer_ws: Workspace, monkeypatch) -> None:
    calls: list[int] = []
    real = leakage._hash_chunk

    def counting(paths):
        calls.append(len(paths))
        return real(paths)

    monkeypatch.setattr(leakage, "_hash_chunk", counting)
    frame = fer_ws.load().frame
    first = row_hashes(fer_ws, "fer2013", frame, workers=1)
    assert sum(calls) == 28  # 30 rows, two pairs of identical files hashed once
    cache = pd.read_parquet(fer_ws.root / "tables/fer2013/phash.parquet")
    assert len(cache) == 28 and cache["sha256"].is_unique
    again = row_hashes(fer_ws, "fer2013", frame, workers=1)
    assert sum(calls) == 28 and again.equals(first)
    # a file rewritten in place (e.g. a new alignment) is hashed again, alone
    path = fer_ws.absolute(frame["original_path"].iloc[10])
    Image.fromarray(face_like(999)).save(path)
    changed = row_hashes(fer_ws, "fer2013", frame, workers=1)
    assert sum(calls) == 29
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
    assert report.leaks["distance"].iloc[0] == pytest.approx(0.0, abs=1e-5)  # 1 - cosine similarity
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
