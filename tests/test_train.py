"""The bundled trainer (ferdata.train): data loading, the k-fold loop, CL/KD, --init, reports, CLI.

Everything runs on the CPU on tiny synthetic faces (32x32): each expression draws a bright patch
at its own place, so a network can learn them in a few steps; a "mask" greys the lower half.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ferdata.cli import app
from ferdata.errors import UsageError
from ferdata.schema import BASIC_LABELS, Manifest, new_frame
from ferdata.train.data import FaceData, load_faces, pe_pairs, subset_rows, usable_rows
from ferdata.train.loop import (
    Accelerator,
    TrainConfig,
    cpu_has_native_bf16,
    fit,
    plan_rounds,
    predict,
    resolve_device,
    train_baseline,
)
from ferdata.train.models import build_model, freeze, load_init
from ferdata.workspace import Workspace

SIZE = 32
QUICK = {"epochs": 1, "batch_size": 16, "image_size": SIZE, "device": "cpu", "tsne": False}


def synthetic_face(label: str, seed: int, masked: bool, size: int = SIZE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
    i = BASIC_LABELS.index(label)
    row, col = divmod(i, 3)
    s = size // 4
    pixels[row * s : (row + 1) * s + 2, col * s : (col + 1) * s + 2, i % 3] = 230
    if masked:
        pixels[size // 2 :, :, :] = 120
    return pixels


def build_workspace(root: Path, *, subjects: int = 6, fold_of=lambda s: s % 2, masked_too: bool = True,
                    wrong: dict[str, str] | None = None) -> Workspace:
    """An aligned, paired, folded MSD-E-like workspace: subjects x 7 expressions (x 2 with masks).

    ``wrong`` maps image ids to a label that the image does not show (a planted label error).
    """
    ws = Workspace.resolve(root)
    rows = []
    for s in range(subjects):
        for i, label in enumerate(BASIC_LABELS):
            for masked in (False, True) if masked_too else (False,):
                image_id = f"{s:03d}_{i}_{'m' if masked else 'n'}"
                relative = f"aligned/msd-e/112px/{image_id}.png"
                path = ws.absolute(relative)
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(synthetic_face(label, s * 100 + i * 2 + masked, masked)).save(path)
                given = (wrong or {}).get(image_id, label)
                rows.append({
                    "image_id": image_id, "dataset": "msd-e", "source": image_id, "sha256": image_id, "subject_id": f"{s:03d}",
                    "label_original": given, "label": given, "masked": masked, "pair_id": f"{s:03d}_{i}", "pair_key": f"{s:03d}_{i}",
                    "in_pe": given == label, "fold": fold_of(s), "original_path": relative, "width": SIZE, "height": SIZE,
                    "face_status": "aligned", "aligned_path": relative,
                })
    ws.save(Manifest("msd-e", new_frame(rows)))
    return ws


def write_published(ws: Workspace, folder: Path) -> Path:
    """The image rows of a workspace in ferdata publish's layout: data/mix/train-*.parquet, ClassLabel labels."""
    frame = ws.load().frame
    names = list(BASIC_LABELS)
    hf = {"info": {"features": {"image": {"_type": "Image"}, "label": {"names": names, "_type": "ClassLabel"}}}}
    table = pa.table({
        "image": [{"bytes": ws.absolute(p).read_bytes(), "path": None} for p in frame["aligned_path"]],
        "label": pa.array([names.index(x) for x in frame["label"]], pa.int64()),
        "image_id": frame["image_id"].tolist(),
        "masked": pa.array(frame["masked"].astype(bool).tolist()),
        "fold": pa.array(frame["fold"].astype("int64").tolist(), pa.int64()),
        "pair_id": frame["pair_id"].tolist(),
        "in_pe": pa.array(frame["in_pe"].astype(bool).tolist()),
    }).replace_schema_metadata({b"huggingface": json.dumps(hf).encode()})
    shard = folder / "data" / "mix" / "train-00000-of-00001.parquet"
    shard.parent.mkdir(parents=True)
    pq.write_table(table, shard)
    # a pe config (one row per pair) beside it must not be read as image rows
    (folder / "data" / "pe").mkdir()
    pq.write_table(pa.table({"pair_id": ["x"], "image_nonmasked": [{"bytes": b"", "path": None}]}),
                   folder / "data" / "pe" / "train-00000-of-00001.parquet")
    return folder


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Workspace:
    return build_workspace(tmp_path_factory.mktemp("train") / "ws")


@pytest.fixture(scope="session")
def published(workspace, tmp_path_factory) -> Path:
    return write_published(workspace, tmp_path_factory.mktemp("published") / "msd-e-hf")


@pytest.fixture(scope="session")
def faces(workspace) -> FaceData:
    return load_faces(workspace, image_size=SIZE)


@pytest.fixture(scope="session")
def runs(published, tmp_path_factory) -> dict:
    """A 2-fold, 1-epoch run of each method on the published folder."""
    root = tmp_path_factory.mktemp("runs")
    return {
        method: train_baseline(published, root / method, TrainConfig(method=method, **{**QUICK, "tsne": method == "cl"}))
        for method in ("ce", "cl", "kd")
    }


# ----------------------------------------------------------------------------- data


def test_published_folder_loads_the_same_faces_as_the_workspace(faces, published):
    from_folder = load_faces(published, image_size=SIZE)
    a, b = np.argsort(faces.image_id), np.argsort(from_folder.image_id)
    assert len(from_folder) == len(faces) == 84
    assert (faces.image_id[a] == from_folder.image_id[b]).all()
    assert (faces.label[a] == from_folder.label[b]).all()
    assert (faces.fold[a] == from_folder.fold[b]).all()
    assert (faces.masked[a] == from_folder.masked[b]).all()
    assert torch.equal(faces.images[a], from_folder.images[b])
    assert faces.images.dtype == torch.uint8 and tuple(faces.images.shape) == (84, 3, SIZE, SIZE)


def test_subsets_and_pairs(faces):
    assert len(subset_rows(faces, "nm")) == len(subset_rows(faces, "m")) == 42
    assert len(subset_rows(faces, "mix")) == 84
    pairs = pe_pairs(faces)
    assert pairs.shape == (42, 2)
    assert (faces.masked[pairs[:, 0]] == 0).all() and (faces.masked[pairs[:, 1]] == 1).all()
    assert (faces.pair_id[pairs[:, 0]] == faces.pair_id[pairs[:, 1]]).all()


def test_usable_rows_have_a_label_and_a_crop_and_the_rest_is_counted_by_reason():
    frame = pd.DataFrame({
        "label": ["happy", "sad", None, None, "fear", "angry", "neutral", "fear"],
        "label_status": ["original", "relabelled", "removed", "removed", "original", "original", "original", "original"],
        "aligned_path": ["a.png", "b.png", "c.png", None, None, None, None, "h.png"],
        "face_status": ["aligned", "registered", "aligned", "no_face", "no_face", "not_run", "unreadable", "registered"],
    })
    used, skipped = usable_rows(frame)
    assert used.index.tolist() == [0, 1, 7]  # registered crops are as usable as detected ones
    assert skipped == {
        "label removed by relabelling": 2,
        "no face crop (no face found)": 1,
        "no face crop (alignment not run)": 1,
        "no face crop (unreadable image)": 1,
    }


def test_rows_without_fold_or_face_are_counted_not_trained(tmp_path):
    ws = build_workspace(tmp_path / "ws", subjects=2, masked_too=False)
    manifest = ws.load()
    manifest.frame.loc[0, "fold"] = None
    manifest.frame.loc[1, ["aligned_path", "face_status"]] = [None, "no_face"]
    ws.save(manifest)
    data = load_faces(ws, image_size=SIZE)
    assert len(data) == 13
    assert data.skipped == {"no face crop (no face found)": 1}
    plan = plan_rounds(data, TrainConfig(**QUICK).for_data(data))
    assert plan.left_out == {"no fold (run ferdata folds)": 1}
    assert sum(len(r.evaluate) for r in plan.rounds) == 12


# ----------------------------------------------------------------------------- runs


@pytest.mark.parametrize("method, images", [("ce", 42), ("cl", 84), ("kd", 84)])
def test_each_method_runs_two_folds_for_one_epoch(runs, method, images):
    result = runs[method]
    oof = pd.read_parquet(result.run_dir / "oof.parquet")
    assert result.folds_trained == [0, 1]
    assert len(oof) == images and oof["image_id"].is_unique
    assert result.summary["folds_finished"] == [0, 1] and result.summary["folds_missing"] == []
    for fold in (0, 1):
        folder = result.run_dir / "folds" / f"fold-{fold}"
        assert (folder / "model.pt").is_file() and (folder / "predictions.parquet").is_file()
        assert len(json.loads((folder / "history.json").read_text())) == 1
        assert (folder / "teacher.pt").is_file() == (method == "kd")
        assert json.loads((folder / "fold.json").read_text())["precision"] == Accelerator("cpu").precision
    assert (result.run_dir / "results.md").read_text().startswith("# ResNet-18")
    assert (result.run_dir / "confusion.png").stat().st_size > 0


@pytest.mark.parametrize("method, steps, ce_steps", [("ce", 2, 2), ("cl", 2, 3), ("kd", 2, 3)])
def test_results_say_random_initialisation_steps_per_epoch_and_log_each_epoch(runs, method, steps, ce_steps):
    result = runs[method]
    summary = json.loads((result.run_dir / "results.json").read_text())
    markdown = (result.run_dir / "results.md").read_text()
    assert summary["initialisation"]["kind"] == "random"
    assert "(random initialisation)" in summary["experiment"] and markdown.startswith(f"# {summary['experiment']}")
    assert "**Initialisation: random** (no `--init`)" in markdown
    # 21 training images (ce on nm) or 21 pairs = 42 images (cl, kd) per fold, batch 16
    assert summary["steps_per_epoch"]["per_round"] == {"0": steps, "1": steps}
    assert summary["steps_per_epoch"]["ce_on_the_same_images"] == ce_steps
    assert summary["options"]["feature"] == "map-l2" and summary["protocol"] == "folds"
    # the per-epoch log: every fold's validation numbers after each epoch, beside the results
    log = pd.read_csv(result.run_dir / "epochs.csv")
    assert log[["round", "epoch"]].values.tolist() == [[0, 1], [1, 1]]
    oof = pd.read_parquet(result.run_dir / "oof.parquet")
    for fold, part in oof.groupby("fold"):
        right = (part["label"] == part["predicted"]).mean()
        # 1 epoch: the logged epoch is the last one, whose network made the reported predictions
        assert log.loc[log["round"] == fold, "val_accuracy"].item() == pytest.approx(right)
    assert summary["epoch_log"]["last_epoch"] == 1 and summary["epoch_log"]["rounds"] == 2


def test_cl_run_draws_confusions_per_kind_and_tsne(runs):
    folder = runs["cl"].run_dir
    for name in ("confusion-nm.png", "confusion-m.png", "tsne.png"):
        assert Image.open(folder / name).size[0] > 100


def test_results_json_equals_numbers_recomputed_from_oof(runs):
    for result in runs.values():
        results = json.loads((result.run_dir / "results.json").read_text())
        oof = pd.read_parquet(result.run_dir / "oof.parquet")
        classes = results["classes"]
        assert [c[2:] for c in oof.columns if c.startswith("p_")] == classes
        probs = oof[[f"p_{c}" for c in classes]].to_numpy()
        assert (np.asarray(classes)[probs.argmax(1)] == oof["predicted"]).all()
        right = (oof["label"] == oof["predicted"]).to_numpy()
        accuracy, nm, m, per_class = [], [], [], {c: [] for c in classes}
        for fold, part in oof.groupby("fold"):
            ok = right[part.index]
            accuracy.append(ok.mean())
            if (~part["masked"]).any():
                nm.append(ok[~part["masked"].to_numpy(bool)].mean())
            if part["masked"].any():
                m.append(ok[part["masked"].to_numpy(bool)].mean())
            for c in classes:
                mine = part["label"] == c
                if mine.any():
                    per_class[c].append((part.loc[mine, "predicted"] == c).mean())
            assert results["per_fold"][str(fold)]["confusion"] == pd.crosstab(
                pd.Categorical(part["label"], classes), pd.Categorical(part["predicted"], classes), dropna=False
            ).to_numpy().tolist()
        assert results["mean"]["accuracy"] == pytest.approx(np.mean(accuracy))
        assert results["std"]["accuracy"] == pytest.approx(np.std(accuracy, ddof=1))
        assert results["mean"]["accuracy_nm"] == (pytest.approx(np.mean(nm)) if nm else None)
        assert results["mean"]["accuracy_m"] == (pytest.approx(np.mean(m)) if m else None)
        for c in classes:
            assert results["mean"]["per_class"][c] == pytest.approx(np.mean(per_class[c]))


def test_kd_takes_a_teacher_run_on_the_same_folds_and_refuses_one_on_others(runs, published, tmp_path):
    teacher = runs["ce"].run_dir  # subset nm, method ce, on the same published folder
    kd = train_baseline(published, tmp_path / "kd", TrainConfig(method="kd", teacher=str(teacher), fold=0, **QUICK))
    info = json.loads((tmp_path / "kd" / "folds" / "fold-0" / "fold.json").read_text())
    assert info["teacher"] == str(teacher / "folds" / "fold-0" / "model.pt") and kd.warnings == []
    assert not (tmp_path / "kd" / "folds" / "fold-0" / "teacher.pt").exists()
    # the same teacher after `ferdata folds` ran again with another seed: fold 0 there is not fold 0 here
    moved = tmp_path / "teacher-on-old-folds"
    shutil.copytree(teacher, moved)
    table = pd.read_parquet(moved / "assignment.parquet")
    table["fold"] = 1 - table["fold"]
    table.to_parquet(moved / "assignment.parquet")
    with pytest.raises(UsageError, match="another fold assignment: 84 of 84 shared images"):
        train_baseline(published, tmp_path / "leak", TrainConfig(method="kd", teacher=str(moved), **QUICK))
    assert not (tmp_path / "leak" / "folds").exists()  # refused before anything was trained
    refused = CliRunner().invoke(app, ["train-baseline", "--data", str(published), "--method", "kd", "--teacher", str(moved),
                                       "--image-size", str(SIZE), "--device", "cpu", "--out", str(tmp_path / "leak")])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert f"--teacher {moved} has another fold assignment" in refused.output.replace("\n", "")


def test_a_teacher_checkpoint_is_taken_with_a_warning(runs, published, tmp_path):
    checkpoint = runs["ce"].run_dir / "folds" / "fold-1" / "model.pt"
    result = CliRunner().invoke(app, ["train-baseline", "--data", str(published), "--method", "kd", "--teacher", str(checkpoint),
                                      "--fold", "1", "--epochs", "1", "--batch-size", "16", "--image-size", str(SIZE),
                                      "--device", "cpu", "--no-tsne", "--out", str(tmp_path / "kd")])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "cannot check which images it was trained on" in result.output
    summary = json.loads((tmp_path / "kd" / "results.json").read_text())
    assert len(summary["warnings"]) == 1 and "Warning: " in (tmp_path / "kd" / "results.md").read_text()


def test_the_console_says_random_initialisation(runs, published):
    ce = runs["ce"]  # re-run into its folder: every fold is reused, nothing trains
    result = CliRunner().invoke(app, ["train-baseline", "--data", str(published), "--epochs", "1", "--batch-size", "16",
                                      "--image-size", str(SIZE), "--device", "cpu", "--no-tsne", "--out", str(ce.run_dir)])
    assert result.exit_code == 0, result.output
    assert "initialisation: random initialisation" in result.output
    assert "ResNet-18 baseline on NM (random initialisation)" in result.output
    assert "folds finished earlier and kept: 0, 1" in result.output


def test_a_finished_fold_is_not_trained_again(runs, published):
    first = runs["ce"]
    model = first.run_dir / "folds" / "fold-0" / "model.pt"
    stamp = model.stat().st_mtime_ns
    again = train_baseline(published, first.run_dir, TrainConfig(method="ce", **QUICK))
    assert again.folds_trained == [] and again.folds_reused == [0, 1]
    assert model.stat().st_mtime_ns == stamp
    assert again.summary["mean"] == first.summary["mean"]
    with pytest.raises(UsageError, match="other options"):
        train_baseline(published, first.run_dir, TrainConfig(method="ce", **{**QUICK, "epochs": 2}))


def test_folds_used_are_exactly_the_manifests(tmp_path):
    # uneven folds: subjects 0,1 -> fold 0; 2 -> fold 1; 3,4,5 -> fold 2
    ws = build_workspace(tmp_path / "ws", fold_of=lambda s: (0, 0, 1, 2, 2, 2)[s], masked_too=False)
    manifest_folds = ws.load().frame.set_index("image_id")["fold"]
    result = train_baseline(ws, tmp_path / "run", TrainConfig(subset="nm", **QUICK))
    oof = pd.read_parquet(tmp_path / "run" / "oof.parquet").set_index("image_id")
    assert sorted(oof.index) == sorted(manifest_folds.index)
    assert (oof["fold"] == manifest_folds.loc[oof.index]).all()
    sizes = manifest_folds.value_counts()
    for fold in (0, 1, 2):
        info = json.loads((tmp_path / "run" / "folds" / f"fold-{fold}" / "fold.json").read_text())
        assert info["n_val_images"] == sizes[fold]
        assert info["n_train_images"] == 42 - sizes[fold]
        assert info["train_folds"] == [f for f in (0, 1, 2) if f != fold]
    assert result.folds_trained == [0, 1, 2]
    with pytest.raises(UsageError, match="folds=10: "):
        train_baseline(ws, tmp_path / "other", TrainConfig(folds=10, **QUICK))
    one = train_baseline(ws, tmp_path / "one", TrainConfig(fold=2, **QUICK))
    assert one.folds_trained == [2] and one.summary["folds_missing"] == [0, 1]


def test_learning_rates_drop_tenfold_at_the_milestones(faces):
    config = TrainConfig(epochs=5, milestones=(2, 4), batch_size=8, image_size=SIZE, augment=False)
    history = fit(build_model(7), faces, np.arange(8), config, Accelerator("cpu"))
    assert [h.lr_backbone for h in history] == pytest.approx([1e-4, 1e-4, 1e-5, 1e-5, 1e-6])
    assert [h.lr_head for h in history] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_pipeline_overfits_32_images(precision):
    rng = np.random.default_rng(0)
    n = 32
    data = FaceData(
        images=torch.from_numpy(rng.integers(0, 256, (n, 3, SIZE, SIZE), dtype=np.uint8)),
        image_id=np.array([str(i) for i in range(n)], dtype=object), label=np.arange(n) % 7,
        masked=np.zeros(n, np.int8), fold=np.zeros(n, np.int64), pair_id=np.array([None] * n, dtype=object),
        in_pe=np.zeros(n, bool), classes=BASIC_LABELS,
    )
    torch.manual_seed(0)
    acc = Accelerator("cpu", precision)
    model = acc.prepare(build_model(7))
    config = TrainConfig(epochs=10, batch_size=8, image_size=SIZE, lr_backbone=1e-3, lr_head=1e-3, milestones=(), augment=False)
    fit(model, data, np.arange(n), config, acc)
    probs, _ = predict(model, data, np.arange(n), acc)
    assert (probs.argmax(1) == data.label).mean() >= 0.95
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast leaves the weights fp32


def test_precision_decides_the_arithmetic_of_the_network():
    x = torch.rand(2, 3, SIZE, SIZE)
    dtypes = {}
    for precision in ("fp32", "bf16", "auto"):
        acc = Accelerator("cpu", precision)
        with acc.autocast():
            dtypes[precision] = build_model(7).net.conv1(x).dtype
        assert acc.scaler is None
    assert dtypes["fp32"] == torch.float32 and dtypes["bf16"] == torch.bfloat16
    # auto: bf16 only where the CPU has bf16 instructions (emulated bf16 is slower than fp32)
    assert dtypes["auto"] == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)
    assert Accelerator("cpu").precision == ("bf16" if cpu_has_native_bf16() else "fp32")
    with pytest.raises(UsageError, match="precision"):
        TrainConfig(precision="fp8").resolved()
    assert "precision" not in TrainConfig().fingerprint()  # like the device: an execution detail


def test_kd_teacher_stays_frozen(faces):
    acc = Accelerator("cpu")
    teacher = freeze(acc.prepare(build_model(7)))
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = acc.prepare(build_model(7))
    student_before = student.net.conv1.weight.detach().clone()
    pairs = pe_pairs(faces)[:16]
    fit(student, faces, pairs, TrainConfig(method="kd", subset="pe", epochs=1, batch_size=8, image_size=SIZE), acc,
        teacher=teacher)
    assert all(not p.requires_grad for p in teacher.parameters())
    assert not teacher.training
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and batch-norm statistics
    assert not torch.equal(student_before, student.net.conv1.weight)


def test_cl_and_kd_losses_follow_the_paper():
    from ferdata.train.losses import contrastive_loss, distillation_loss

    g = torch.Generator().manual_seed(0)
    logits_a, logits_b = torch.randn(4, 7, generator=g), torch.randn(4, 7, generator=g)
    f_a, f_b = torch.randn(4, 512, generator=g), torch.randn(4, 512, generator=g)
    y = torch.tensor([0, 3, 6, 2])
    ce = torch.nn.functional.cross_entropy
    mse = ((f_a - f_b) ** 2).mean()
    cl = contrastive_loss(logits_a, logits_b, f_a, f_b, y, a=0.2, b=1.0)
    assert float(cl.total) == pytest.approx(float(0.2 * mse + ce(logits_a, y) + ce(logits_b, y)), rel=1e-6)
    kd = distillation_loss(logits_a, f_a, f_b, y, lam=100.0)
    assert float(kd.total) == pytest.approx(float(ce(logits_a, y) + 100.0 * mse), rel=1e-6)


def test_init_maps_wrapped_keys_and_reports_what_it_loaded(tmp_path):
    from torchvision.models import resnet18

    source = resnet18(weights=None, num_classes=1000).state_dict()  # a face-recognition net has other outputs
    wrapped = {f"module.{k}": v for k, v in source.items() if not k.startswith("layer4.1.")}
    wrapped["module.feature.weight"] = torch.zeros(3)
    path = tmp_path / "msceleb.pth"
    torch.save({"state_dict": wrapped, "epoch": 30}, path)
    model = build_model(7)
    report = load_init(model, path)
    assert "net.conv1.weight" in report.loaded and "net.layer4.0.conv2.weight" in report.loaded
    assert torch.equal(model.net.conv1.weight, source["conv1.weight"])
    assert report.mismatched == ["net.fc.bias", "net.fc.weight"]
    assert "net.layer4.1.conv1.weight" in report.missing and not any(k.startswith("net.layer3") for k in report.missing)
    assert report.unused == ["module.feature.weight"]
    assert len(report.loaded) + len(report.missing) + len(report.mismatched) == len(model.state_dict())
    with pytest.raises(UsageError, match="ResNet-18"):
        torch.save({"x.weight": torch.zeros(2)}, tmp_path / "other.pth")
        load_init(build_model(7), tmp_path / "other.pth")


def test_device_choice():
    if torch.cuda.is_available():
        assert resolve_device("auto") == resolve_device("cuda") == "cuda"
    else:
        assert resolve_device("auto") == "cpu"
        with pytest.raises(UsageError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_options_that_contradict_each_other_are_refused(published, tmp_path):
    with pytest.raises(UsageError, match="^method=cl trains on MSD-PE pairs: use subset=pe$"):
        train_baseline(published, tmp_path / "r", TrainConfig(method="cl", subset="nm", **QUICK))
    with pytest.raises(UsageError, match="milestones"):
        TrainConfig(milestones=(14, 8)).resolved()
    # the command line reads the same messages with its flags
    for args, line in ((["--method", "cl", "--subset", "nm"], "--method cl trains on MSD-PE pairs: use --subset pe"),
                       (["--kd-p", "1.5"], "--kd-p 1.5 is not a probability"),
                       (["--epochs", "0"], "--epochs and --batch-size must be at least 1 and --image-size at least 32")):
        result = CliRunner().invoke(app, ["train-baseline", "--data", str(published), *args])
        assert result.exit_code == 1 and line in result.output, result.output


# ----------------------------------------------------------------------------- CLI


def test_cli_trains_reports_init_and_refuses_cuda_without_gpu(workspace, tmp_path):
    from torchvision.models import resnet18

    init = tmp_path / "init.pth"
    torch.save(resnet18(weights=None).state_dict(), init)
    runner = CliRunner()
    args = ["train-baseline", "-w", str(workspace.root), "--subset", "m", "--folds", "2", "--epochs", "1",
            "--batch-size", "16", "--image-size", str(SIZE), "--device", "cpu", "--no-tsne", "--out", str(tmp_path / "run")]
    result = runner.invoke(app, [*args, "--init", str(init)])
    assert result.exit_code == 0, result.output
    assert "120 tensors loaded; not loaded: net.fc.bias, net.fc.weight" in result.output
    summary = json.loads((tmp_path / "run" / "results.json").read_text())
    assert summary["folds_finished"] == [0, 1] and summary["mean"]["accuracy_nm"] is None
    assert "ResNet-18 baseline on M" in result.output
    if not torch.cuda.is_available():
        refused = runner.invoke(app, [*args[:-2], "--out", str(tmp_path / "gpu"), "--device", "cuda"])
        assert refused.exit_code == 1
        assert "no CUDA GPU" in refused.output and "Traceback" not in refused.output
