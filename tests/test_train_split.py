"""The official-split protocol (issue 17): FERV39k clips, FER2013 and FER+ splits, data beyond memory.

Every delivery is a tiny imitation of the real layout, ingested by ferdata itself without
detection; its rows then get the crop a registered source would have (``aligned_path`` = the
extracted original), as the trainer only asks for a usable crop. Faces are the 32-pixel patterns
of ``test_train`` (a bright patch per expression), so a network learns them in a few steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from test_train import SIZE, build_workspace, synthetic_face, write_published
from typer.testing import CliRunner

from ferdata.cli import app
from ferdata.errors import UsageError
from ferdata.ingest import ingest
from ferdata.labelissues import label_issues
from ferdata.relabel import relabel
from ferdata.schema import BASIC_LABELS
from ferdata.train.data import DiskFaces, FaceData, load_faces
from ferdata.train.loop import Accelerator, TrainConfig, plan_rounds, predict, train_baseline
from ferdata.train.models import load_checkpoint
from ferdata.train.report import clip_metrics
from ferdata.workspace import Workspace

QUICK = {"batch_size": 16, "image_size": SIZE, "device": "cpu", "tsne": False, "milestones": ()}
FER_ORDER = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]  # FER2013's emotion index
FERV39K_EMOTIONS = {"angry": "Angry", "disgust": "Disgust", "fear": "Fear", "happy": "Happy", "neutral": "Neutral",
                    "sad": "Sad", "surprise": "Surprise"}


def give_crops(ws: Workspace, dataset: str) -> None:
    """What a registered source's alignment leaves: every readable row holds a crop."""
    manifest = ws.load(dataset)
    frame = manifest.frame
    frame["aligned_path"] = frame["original_path"]
    frame["face_status"] = "aligned"
    ws.save(manifest)


# ----------------------------------------------------------------------------- clip-level metrics


def test_clip_war_and_uar_by_hand():
    classes = ("surprise", "fear", "happy")
    frames = [  # clip, label, p_surprise, p_fear, p_happy
        ("a", "happy", 0.1, 0.0, 0.9), ("a", "happy", 0.7, 0.1, 0.2),  # mean: happy .55 -> right
        # b: 2 of 3 frames say surprise, but the mean of the softmax says happy (.533 vs .383) -> right
        ("b", "happy", 0.6, 0.1, 0.3), ("b", "happy", 0.5, 0.1, 0.4), ("b", "happy", 0.05, 0.05, 0.9),
        ("c", "surprise", 0.2, 0.1, 0.7),  # -> happy, wrong
        ("d", "fear", 0.3, 0.5, 0.2), ("d", "fear", 0.2, 0.6, 0.2),  # -> fear, right
    ]
    predictions = pd.DataFrame(frames, columns=["clip_id", "label", "p_surprise", "p_fear", "p_happy"])
    clips = clip_metrics(predictions, classes)
    assert clips["n_clips"] == 4 and clips["n_frames"] == 8
    assert clips["war"] == pytest.approx(3 / 4)  # 3 of 4 clips right
    assert clips["uar"] == pytest.approx((0 / 1 + 1 / 1 + 2 / 2) / 3)  # surprise 0/1, fear 1/1, happy 2/2
    assert clips["per_class"] == {"surprise": 0.0, "fear": 1.0, "happy": 1.0}
    assert clips["confusion"] == [[0, 0, 1], [0, 1, 0], [0, 0, 2]]
    assert clip_metrics(predictions.assign(clip_id=None), classes) is None  # images, not frames


# ----------------------------------------------------------------------------- protocol choice


def faces(folds, splits, masked=None) -> FaceData:
    n = len(folds)
    return FaceData(
        images=torch.zeros((n, 3, SIZE, SIZE), dtype=torch.uint8), image_id=np.array([str(i) for i in range(n)], dtype=object),
        label=np.arange(n) % 7, masked=np.array(masked if masked is not None else [-1] * n, np.int8),
        fold=np.array(folds, np.int64), pair_id=np.array([None] * n, dtype=object), in_pe=np.zeros(n, bool),
        classes=BASIC_LABELS, split=np.array(splits, dtype=object),
    )


def test_the_default_protocol_follows_the_data():
    msd_e = faces([0, 1, 0, 1], [None] * 4, masked=[0, 1, 0, 1])
    fer2013 = faces([-1] * 4, ["train", "train", "val", "test"])
    folded_fer2013 = faces([0, 1, 0, 1], ["train", "train", "val", "test"])
    occlu = faces([-1] * 4, ["train", "train", "val", "val"])
    config = TrainConfig(**QUICK)
    assert config.for_data(msd_e).protocol == "folds" and config.for_data(msd_e).subset == "nm"
    assert config.for_data(fer2013).protocol == "split" and config.for_data(fer2013).subset == "mix"
    assert config.for_data(folded_fer2013).protocol == "split"  # an official split wins over folds
    assert TrainConfig(protocol="folds", **QUICK).for_data(folded_fer2013).protocol == "folds"
    # FER2013: PublicTest (val) chooses the epoch, PrivateTest (test) is reported
    (round_,) = plan_rounds(fer2013, config.for_data(fer2013)).rounds
    assert (round_.train.tolist(), round_.watch.tolist(), round_.evaluate.tolist(), round_.select) == ([0, 1], [2], [3], True)
    # Occlu-FER: no test split, so val is reported at the last epoch and chooses nothing
    (round_,) = plan_rounds(occlu, config.for_data(occlu)).rounds
    assert (round_.evaluated_split, round_.evaluate.tolist(), round_.select) == ("val", [2, 3], False)
    # MSD-E before ferdata folds: neither folds nor a split to evaluate on
    bare = faces([-1] * 4, [None] * 4, masked=[0, 1, 0, 1])
    with pytest.raises(UsageError, match="ferdata folds"):
        plan_rounds(bare, config.for_data(bare))
    with pytest.raises(UsageError, match="fold"):
        TrainConfig(protocol="split", fold=1, **QUICK).resolved()


def test_rows_without_a_split_are_left_out_and_counted():
    data = faces([-1] * 5, ["train", "train", None, "test", None])
    plan = plan_rounds(data, TrainConfig(**QUICK).for_data(data))
    assert plan.left_out == {"no split (the source gives none for these rows)": 2}
    assert plan.rounds[0].evaluate.tolist() == [3]


# ----------------------------------------------------------------------------- FERV39k


def ferv39k_delivery(root: Path) -> Path:
    """2_ClipsforFaceCrop/<Scene>/<Emotion>/<clip>/<frame>.jpg and the All_scenes setup lists:
    per expression two training clips and one test clip of three frames, in two scenes."""
    lines = {"train_All.csv": [], "test_All.csv": []}
    for i, label in enumerate(BASIC_LABELS):
        for c in range(3):
            scene = ("Street", "Classroom")[c % 2]
            clip = f"{scene}/{FERV39K_EMOTIONS[label]}/{i * 10 + c:04d}"
            for f in range(3):
                path = root / "2_ClipsforFaceCrop" / clip / f"{f:03d}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(synthetic_face(label, i * 100 + c * 10 + f, False)).save(path, quality=95)
            lines["test_All.csv" if c == 2 else "train_All.csv"].append(f"{clip} {i}")
    setups = root / "4_setups" / "All_scenes"
    setups.mkdir(parents=True)
    for name, rows in lines.items():
        (setups / name).write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def ferv39k(tmp_path_factory) -> Workspace:
    root = tmp_path_factory.mktemp("ferv39k")
    ws = Workspace.resolve(root / "ws")
    ingest(ws, ferv39k_delivery(root / "FERV39k"), dataset="ferv39k", align=False)
    give_crops(ws, "ferv39k")
    return ws


def test_ferv39k_split_trains_on_train_and_reports_clip_war_and_uar_on_test(ferv39k, tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train-baseline", "-w", str(ferv39k.root), "--protocol", "split", "--epochs", "1",
                                      "--batch-size", "16", "--image-size", str(SIZE), "--device", "cpu", "--no-tsne",
                                      "--out", str(run)])
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "results.json").read_text())
    predictions = pd.read_parquet(run / "predictions.parquet")
    manifest = ferv39k.load().frame
    test_ids = set(manifest.loc[manifest["split"] == "test", "image_id"])
    assert set(predictions["image_id"]) == test_ids and len(test_ids) == 21  # 7 test clips x 3 frames
    info = json.loads((run / "split" / "fold.json").read_text())
    assert info["n_train_images"] == 42 and info["evaluated_split"] == "test"
    assert summary["protocol"] == "split" and summary["evaluated_split"] == "test"
    assert summary["selection"] == {"split": None, "epoch": 1, "rule": "last epoch"}  # FERV39k has no val
    # clip level, recomputed here: mean of the frames' softmax per clip, argmax
    probs = predictions[[f"p_{c}" for c in summary["classes"]]]
    per_clip = probs.groupby(predictions["clip_id"]).mean().idxmax(axis=1).str[2:]
    truth = predictions.groupby("clip_id")["label"].first()
    right = per_clip == truth
    assert summary["clip"]["n_clips"] == 7
    assert summary["clip"]["war"] == pytest.approx(right.mean())
    assert summary["clip"]["uar"] == pytest.approx(right.groupby(truth).mean().mean())
    assert summary["frame"]["war"] == pytest.approx((predictions["label"] == predictions["predicted"]).mean())
    # the published baseline beside ours, with what differs
    baseline = summary["baseline"]
    assert baseline["compare"]["clip_war"]["published"] == 39.33 and baseline["compare"]["clip_uar"]["published"] == 30.30
    assert baseline["compare"]["clip_war"]["ours"] == summary["clip"]["war"]
    markdown = (run / "results.md").read_text()
    assert "39.33" in markdown and "random initialisation" in markdown and "clips (mean softmax per clip)" in markdown
    assert "WAR" in result.output and "published: clip_war 39.33" in result.output


def test_a_published_ferv39k_folder_keeps_splits_clips_and_its_name(ferv39k, tmp_path):
    from ferdata.publish import publish

    publish(ferv39k, tmp_path / "hf", dataset="ferv39k")
    from_folder = load_faces(tmp_path / "hf", image_size=SIZE, memory_budget=0)  # streamed from the shards to disk
    from_workspace = load_faces(ferv39k, image_size=SIZE)
    assert isinstance(from_folder.images, DiskFaces) and from_folder.origin["dataset"] == "ferv39k"
    a, b = np.argsort(from_workspace.image_id), np.argsort(from_folder.image_id)
    assert (from_workspace.image_id[a] == from_folder.image_id[b]).all()
    assert (from_workspace.split[a] == from_folder.split[b]).all() and from_folder.splits == ["train", "test"]
    assert (from_workspace.clip_id[a] == from_folder.clip_id[b]).all()
    assert torch.equal(from_workspace.images[a], from_folder.images.take(b))


# ----------------------------------------------------------------------------- FER2013 and FER+


def fer_csv(path: Path, n_per_class: dict[str, int]) -> list[tuple[str, str]]:
    """A fer2013.csv (emotion,pixels,Usage) of 48x48 grayscale faces; returns (label, Usage) per row."""
    rows, lines, seed = [], ["emotion,pixels,Usage"], 0
    for usage, n in n_per_class.items():
        for k in range(n):
            label = FER_ORDER[k % 7]
            seed += 1
            gray = np.asarray(Image.fromarray(synthetic_face(label, seed, False, size=48)).convert("L"))
            lines.append(f"{FER_ORDER.index(label)},{' '.join(map(str, gray.ravel()))},{usage}")
            rows.append((label, usage))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return rows


@pytest.fixture(scope="module")
def fer2013(tmp_path_factory) -> Workspace:
    root = tmp_path_factory.mktemp("fer2013")
    fer_csv(root / "delivery" / "fer2013.csv", {"Training": 28, "PublicTest": 14, "PrivateTest": 14})
    ws = Workspace.resolve(root / "ws")
    ingest(ws, root / "delivery", dataset="fer2013", align=False)
    give_crops(ws, "fer2013")
    return ws


FER_SPLIT = {**QUICK, "epochs": 3, "lr_backbone": 1e-3, "augment": False}


@pytest.fixture(scope="module")
def fer2013_run(fer2013, tmp_path_factory):
    return train_baseline(fer2013, tmp_path_factory.mktemp("fer-run") / "run", TrainConfig(**FER_SPLIT))


def test_fer2013_reports_privatetest_accuracy_with_the_epoch_chosen_on_publictest(fer2013, fer2013_run):
    run, summary = fer2013_run.run_dir, fer2013_run.summary
    predictions = pd.read_parquet(run / "predictions.parquet")
    frame = fer2013.load().frame.set_index("image_id")
    assert (frame.loc[predictions["image_id"], "split"] == "test").all() and len(predictions) == 14
    assert summary["frame"]["accuracy"] == pytest.approx((predictions["label"] == predictions["predicted"]).mean())
    # the chosen epoch is the best on PublicTest (ties: the earliest), never on PrivateTest
    history = json.loads((run / "split" / "history.json").read_text())
    val = [h["val"]["accuracy"] for h in history]
    assert summary["selection"]["split"] == "val" and summary["selection"]["epoch"] == int(np.argmax(val)) + 1
    assert all(h["val"]["n"] == 14 for h in history)
    # and the saved network is that epoch's: it predicts PublicTest as the log says
    data = load_faces(fer2013, image_size=SIZE)
    public = np.flatnonzero(data.split == "val")
    probs, _ = predict(load_checkpoint(run / "split" / "model.pt", data.classes), data, public, Accelerator("cpu"))
    assert (probs.argmax(1) == data.label[public]).mean() == pytest.approx(max(val))
    markdown = (run / "results.md").read_text()
    assert "test (PrivateTest)" in markdown and "val (PublicTest)" in markdown
    assert "No published baseline for this experiment is recorded in manifests/fer2013.toml" in markdown


def test_the_memory_budget_path_trains_the_same_network_and_the_chosen_epoch_is_reported(fer2013, fer2013_run, tmp_path):
    # a run that stops at the chosen epoch ends with the network the longer run chose: same
    # seed, same batches, and the per-epoch evaluation draws nothing from the training's generator
    chosen = fer2013_run.summary["selection"]["epoch"]
    on_disk = train_baseline(fer2013, tmp_path / "run", TrainConfig(**{**FER_SPLIT, "epochs": chosen}, memory_budget="0"))
    assert on_disk.storage["storage"] == "disk" and fer2013_run.storage["storage"] == "memory"
    cache = list((tmp_path / "run" / "cache").glob("faces-32px-*.u8"))
    assert len(cache) == 1 and cache[0].stat().st_size == 56 * 3 * SIZE * SIZE
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "run" / "predictions.parquet"),
                                  pd.read_parquet(fer2013_run.run_dir / "predictions.parquet"))
    assert on_disk.summary["frame"] == fer2013_run.summary["frame"]


def test_the_disk_cache_is_reused_until_a_face_changes(fer2013, tmp_path):
    memory = load_faces(fer2013, image_size=SIZE)
    first = load_faces(fer2013, image_size=SIZE, memory_budget=0, cache_dir=tmp_path)
    assert isinstance(first.images, DiskFaces) and torch.equal(first.images.take(np.arange(56)), memory.images)
    stamp = first.images.path.stat().st_mtime_ns
    again = load_faces(fer2013, image_size=SIZE, memory_budget=0, cache_dir=tmp_path)
    assert again.images.path == first.images.path and again.images.path.stat().st_mtime_ns == stamp
    changed = fer2013.absolute(fer2013.load().frame["aligned_path"].iloc[0])
    original = changed.read_bytes()
    try:
        Image.fromarray(np.zeros((48, 48), np.uint8)).save(changed)
        fresh = load_faces(fer2013, image_size=SIZE, memory_budget=0, cache_dir=tmp_path)
        assert fresh.images.path != first.images.path and not first.images.path.exists()
        row = int(np.flatnonzero(fresh.image_id == fer2013.load().frame["image_id"].iloc[0])[0])
        assert int(fresh.images.take(np.array([row])).sum()) == 0
    finally:
        changed.write_bytes(original)
    assert isinstance(load_faces(fer2013, image_size=SIZE, memory_budget="1GiB").images, torch.Tensor)  # fits: memory


def test_ferplus_trains_on_the_majority_labels_and_leaves_removed_rows_out(tmp_path):
    delivery = tmp_path / "delivery"
    rows = fer_csv(delivery / "fer2013.csv", {"Training": 28, "PublicTest": 7, "PrivateTest": 7})
    votes = ["Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"]
    column = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness", "sad": "sadness",
              "surprise": "surprise", "neutral": "neutral"}
    names = votes[0].split(",")[2:]
    for i, (label, usage) in enumerate(rows):
        counts = dict.fromkeys(names, 0)
        if i % 6 == 4:
            counts["unknown"] = 10  # FER+ drops it: removed
        elif i % 6 == 5:
            counts.update({"contempt": 8, "neutral": 2})  # relabelled contempt
        else:
            counts[column[label]] = 10
        votes.append(f"{usage},fer{i:07d}.png," + ",".join(str(counts[n]) for n in names))
    (delivery / "fer2013new.csv").write_text("\n".join(votes) + "\n")
    ws = Workspace.resolve(tmp_path / "ws")
    ingest(ws, delivery, dataset="ferplus", align=False)
    give_crops(ws, "ferplus")
    with ws.lock("relabel"):
        relabel(ws, "tables/ferplus/fer2013new.csv", scheme="ferplus-majority")
    frame = ws.load().frame
    removed = int((frame["label_status"] == "removed").sum())
    assert removed == 7
    result = train_baseline(ws, tmp_path / "run", TrainConfig(**QUICK, epochs=1))
    predictions = pd.read_parquet(tmp_path / "run" / "predictions.parquet")
    kept_test = frame[(frame["split"] == "test") & frame["label"].notna()]
    assert set(predictions["image_id"]) == set(kept_test["image_id"])  # PrivateTest, removed rows left out
    assert sorted(predictions["label"]) == sorted(kept_test["label"]) and "contempt" in set(kept_test["label"])
    assert result.skipped == {"label removed by relabelling": removed}
    assert result.summary["classes"][-1] == "contempt" and result.summary["evaluated_split"] == "test"
    assert "test (PrivateTest)" in (tmp_path / "run" / "results.md").read_text()
    # label-issues reads a split run's predictions (never trained on) like out-of-fold ones
    issues = label_issues(tmp_path / "run")
    assert issues.n_checked == len(predictions)


def test_cli_says_which_flag_when_a_split_run_is_asked_for_folds(fer2013, tmp_path):
    result = CliRunner().invoke(app, ["train-baseline", "-w", str(fer2013.root), "--fold", "1", "--image-size", str(SIZE),
                                      "--device", "cpu", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--protocol folds" in result.output


def test_msd_e_keeps_the_folds_protocol(tmp_path):
    ws = build_workspace(tmp_path / "ws", subjects=2, masked_too=False)
    data = load_faces(write_published(ws, tmp_path / "hf"), image_size=SIZE)
    assert data.splits == ["train"] and not data.has_official_split  # publish names split-less rows train
    config = TrainConfig(**QUICK).for_data(data)
    assert config.protocol == "folds"
    assert [r.name for r in plan_rounds(data, config).rounds] == [0, 1]
