"""CL and KD as the paper and the authors' code define them (issue 22): the feature scale of the
distance, one augmentation draw per pair, the teacher's provenance, and the initialisation."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from test_train import SIZE, synthetic_face

from ferdata.errors import UsageError
from ferdata.schema import BASIC_LABELS
from ferdata.train.data import FaceData
from ferdata.train.loop import (
    ASSIGNMENT_FILE,
    RUN_FILE,
    Accelerator,
    TrainConfig,
    assignment_frame,
    check_teacher_run,
    fit,
)
from ferdata.train.losses import contrastive_loss, distillation_loss
from ferdata.train.models import build_model, freeze

# ----------------------------------------------------------------------------- initialisation


def test_init_means_face_recognition_size_unless_the_size_is_given():
    assert TrainConfig().resolved().image_size == 112
    assert TrainConfig(init="msceleb.pth").resolved().image_size == 224  # what such weights are trained at
    assert TrainConfig(init="msceleb.pth", image_size=112).resolved().image_size == 112


# ----------------------------------------------------------------------------- the feature scale


def pairs_of_faces(n: int = 8, size: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalised inputs of n non-masked faces, their masked twins and their labels."""
    labels = np.arange(n) % 7
    nm = np.stack([synthetic_face(BASIC_LABELS[y], i, False, size) for i, y in enumerate(labels)])
    m = np.stack([synthetic_face(BASIC_LABELS[y], i, True, size) for i, y in enumerate(labels)])
    acc = Accelerator("cpu", "fp32")
    as_input = lambda a: acc.inputs(torch.from_numpy(a).permute(0, 3, 1, 2).contiguous())
    return as_input(nm), as_input(m), torch.from_numpy(labels)


def test_the_normalised_features_keep_the_distance_on_the_scale_of_the_cross_entropy():
    """At initialisation, KD's λ·MSE (λ = 100) against CE: on raw pooled features the distance
    outweighs the classification loss many times; on L2-normalised ones it cannot exceed
    100 · 4/512 (two unit vectors are at most 2 apart; the MSE averages over 512 channels)."""
    nm, m, y = pairs_of_faces()
    torch.manual_seed(1)
    teacher = freeze(build_model(7))
    torch.manual_seed(0)
    student = build_model(7).train()
    scale = {}
    with torch.no_grad():
        for feature in ("pool", "pool-l2", "map-l2"):
            _, f_teacher = teacher(nm, feature)
            logits, f_student = student(m, feature)
            parts = distillation_loss(logits, f_student, f_teacher, y, lam=100.0)
            scale[feature] = (100.0 * float(parts.mse), float(parts.ce))
    ce = scale["pool"][1]
    assert ce == pytest.approx(np.log(7), rel=0.15)  # an untrained 7-way classifier
    assert scale["pool"][0] > 10 * ce
    for feature in ("pool-l2", "map-l2"):
        assert 0 < scale[feature][0] <= 100 * 4 / 512 < ce
    # the map keeps its positions: B x 512 x h x w, each position a unit vector
    _, fmap = student(nm, "map-l2")
    assert fmap.shape == (8, 512, 2, 2) and torch.allclose(fmap.norm(dim=1), torch.ones(8, 2, 2), atol=1e-5)


def test_the_losses_follow_equations_3_and_4_on_any_feature_shape():
    g = torch.Generator().manual_seed(0)
    logits_a, logits_b = torch.randn(4, 7, generator=g), torch.randn(4, 7, generator=g)
    f_a, f_b = torch.randn(4, 512, 3, 3, generator=g), torch.randn(4, 512, 3, 3, generator=g)
    y = torch.tensor([0, 3, 6, 2])
    mse = ((f_a - f_b) ** 2).mean()
    cl = contrastive_loss(logits_a, logits_b, f_a, f_b, y, a=0.2, b=1.0)
    assert float(cl.total) == pytest.approx(float(0.2 * mse + F.cross_entropy(logits_a, y) + F.cross_entropy(logits_b, y)))
    kd = distillation_loss(logits_a, f_a, f_b, y, lam=100.0)
    assert float(kd.total) == pytest.approx(float(F.cross_entropy(logits_a, y) + 100.0 * mse))


# ----------------------------------------------------------------------------- paired augmentation


class Recorder(torch.nn.Module):
    """A stand-in network that remembers every batch it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))
        self.fc = torch.nn.Linear(3, 7)
        self.seen: list[torch.Tensor] = []

    def forward(self, x, feature="pool"):
        self.seen.append(x.detach().clone())
        pooled = x.mean(dim=(2, 3)) * self.scale
        return self.fc(pooled), pooled

    def parameter_groups(self):
        return [self.scale], list(self.fc.parameters())


def twin_faces(n: int = 6) -> FaceData:
    """n pairs whose masked image is pixel for pixel its non-masked twin."""
    rng = np.random.default_rng(0)
    half = rng.integers(0, 256, (n, 3, 24, 24), dtype=np.uint8)
    return FaceData(
        images=torch.from_numpy(np.concatenate([half, half])), image_id=np.array([str(i) for i in range(2 * n)], dtype=object),
        label=np.tile(np.arange(n) % 7, 2), masked=np.repeat(np.array([0, 1], np.int8), n), fold=np.zeros(2 * n, np.int64),
        pair_id=np.array([f"p{i}" for i in range(n)] * 2, dtype=object), in_pe=np.ones(2 * n, bool), classes=BASIC_LABELS,
    )


@pytest.mark.parametrize("method", ["cl", "kd"])
def test_both_images_of_a_pair_get_one_augmentation_draw(method):
    data = twin_faces()
    pairs = np.stack([np.arange(6), np.arange(6) + 6], axis=1)
    config = TrainConfig(method=method, subset="pe", epochs=2, batch_size=4, image_size=24, kd_p=0.5)
    model, teacher = Recorder(), Recorder() if method == "kd" else None
    fit(model, data, pairs, config, Accelerator("cpu", "fp32"), teacher=teacher)
    unaugmented = Accelerator("cpu", "fp32").inputs(data.images[:6])
    if method == "cl":
        for both in model.seen:  # the joint batch: non-masked half, then masked half
            n = len(both) // 2
            assert torch.equal(both[:n], both[n:])
        batches = model.seen
    else:  # the teacher's non-masked input and the student's input, whichever twin it got
        assert len(teacher.seen) == len(model.seen) == 4
        for seen_by_teacher, seen_by_student in zip(teacher.seen, model.seen):
            assert torch.equal(seen_by_teacher, seen_by_student)
        batches = teacher.seen
    # and the augmentation did run, with its own draw per pair
    first = batches[0][:1]
    assert not any(torch.allclose(first, unaugmented[i : i + 1]) for i in range(6))
    assert not torch.allclose(batches[0][0], batches[2][0])


# ----------------------------------------------------------------------------- the KD teacher


def teacher_faces() -> FaceData:
    n = 8
    return FaceData(
        images=torch.zeros((n, 3, SIZE, SIZE), dtype=torch.uint8), image_id=np.array([f"img{i}" for i in range(n)], dtype=object),
        label=np.arange(n) % 7, masked=np.array([0, 1] * 4, np.int8), fold=np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
        pair_id=np.array([f"p{i // 2}" for i in range(n)], dtype=object), in_pe=np.ones(n, bool), classes=BASIC_LABELS,
        origin={"kind": "workspace", "path": "/ws", "dataset": "msd-e"},
    )


def teacher_run(folder, data: FaceData, **changes) -> None:
    """The two files a teacher check reads, as a nm/ce run on ``data`` writes them."""
    options = {**TrainConfig(subset="nm", image_size=SIZE).for_data(data).fingerprint(), **changes.pop("options", {})}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RUN_FILE).write_text(json.dumps({"options": options, "classes": list(data.classes),
                                               "data": {**data.origin, **changes.pop("origin", {})}}))
    changes.pop("assignment", assignment_frame(data)).to_parquet(folder / ASSIGNMENT_FILE)


def test_a_teacher_run_on_other_folds_subset_or_dataset_is_refused(tmp_path):
    data = teacher_faces()
    kd = TrainConfig(method="kd", image_size=SIZE).for_data(data)
    teacher_run(tmp_path / "same", data)
    check_teacher_run(tmp_path / "same", data, kd)  # same folds, nm, ce: accepted

    reshuffled = assignment_frame(data).assign(fold=pd.array([1, 0, 1, 1, 0, 0, 1, 1], dtype="Int64"))
    teacher_run(tmp_path / "folds", data, assignment=reshuffled)
    with pytest.raises(UsageError, match=r"another fold assignment: 1 of 8 shared images sit in another fold \(e.g. img0: fold 1 there, fold 0 here\)"):
        check_teacher_run(tmp_path / "folds", data, kd)
    teacher_run(tmp_path / "mix", data, options={"subset": "mix"})
    with pytest.raises(UsageError, match="subset mix .*non-masked images only"):
        check_teacher_run(tmp_path / "mix", data, kd)
    teacher_run(tmp_path / "other", data, origin={"dataset": "occlu-fer"})
    with pytest.raises(UsageError, match="dataset occlu-fer, this run is on msd-e"):
        check_teacher_run(tmp_path / "other", data, kd)
    teacher_run(tmp_path / "size", data, options={"image_size": 224})
    with pytest.raises(UsageError, match="224 pixels"):
        check_teacher_run(tmp_path / "size", data, kd)
    shutil.copytree(tmp_path / "same", tmp_path / "old")
    (tmp_path / "old" / ASSIGNMENT_FILE).unlink()
    with pytest.raises(UsageError, match="records no fold assignment"):
        check_teacher_run(tmp_path / "old", data, kd)
    with pytest.raises(UsageError, match="holds no run.json"):
        check_teacher_run(tmp_path, data, kd)
