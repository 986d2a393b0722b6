"""The k-fold protocol of the paper's section 3.1, resumable fold by fold.

For each validation fold a fresh ResNet-18 (optionally ``--init`` from face-recognition weights) is
trained on the other folds with Adam in two parameter groups (backbone ``lr_backbone``, classifier
``lr_head``) and a MultiStepLR that divides both by 10 at the milestone epochs; then it predicts
the validation fold. Milestones count epochs from 0 like torch's ``MultiStepLR`` (the authors'
code): with ``8,14,20`` the 9th, 15th and 21st epochs run at the lower rates.

Methods (paper, section 3.3): ``ce`` trains on single images of the subset; ``cl`` feeds both
images of each MSD-PE pair through the one network; ``kd`` distils a frozen teacher trained on
non-masked images into a student that sees the masked image, or with probability p the
non-masked one. Without ``--teacher`` the teacher of fold i is trained here, on the non-masked
images of the training folds only, so that no validation face reaches the student through it.

Layout of ``RUN_DIR``::

    run.json                     options, data origin, classes (a re-run must match them)
    folds/fold-<i>/model.pt      the fold's network (written atomically)
    folds/fold-<i>/teacher.pt    KD only: the fold's teacher when trained here
    folds/fold-<i>/history.json  per epoch: loss, accuracy, learning rates, images/s
    folds/fold-<i>/fold.json     rows used, --init report, timings
    folds/fold-<i>/features.npy  penultimate features of the validation images (t-SNE)
    folds/fold-<i>/predictions.parquet   written last: its presence marks the fold finished
    oof.parquet                  out-of-fold probabilities of every finished fold
    results.json, results.md, confusion-*.png, tsne.png   (see :mod:`ferdata.train.report`)

Speed: the faces sit in memory as one uint8 tensor (on the GPU when training there), batches are
gathered by index and augmented as whole tensors (random flip and a small random affine warp),
networks run channels-last and under autocast (``precision``, see :class:`Accelerator`): on CUDA
bf16 where supported, else fp16 with a gradient scaler; on a CPU with native bf16 instructions
(AVX512-BF16 or AMX) bf16, elsewhere fp32. Weights, optimizer state and losses stay fp32.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UsageError
from ..fsutil import atomic_path, atomic_write_bytes, remove_stale_temps
from ..progress import ProgressFn
from .data import (
    MASKED,
    NON_MASKED,
    SUBSETS,
    FaceData,
    load_faces,
    pe_pairs,
    subset_rows,
)

METHODS = ("ce", "cl", "kd")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
GAMMA = 0.1  # "reduced by a factor of 10" (paper, section 3.1)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RUN_FILE = "run.json"
DONE_FILE = "predictions.parquet"


@dataclass(frozen=True)
class TrainConfig:
    """The options of ``ferdata train-baseline``; defaults are the paper's (section 3.1, 3.3)."""

    subset: str | None = None  # None: pe for cl/kd, else nm
    method: str = "ce"
    folds: int | None = None  # expected number of folds in the data; None: whatever it has
    fold: int | None = None  # run only this validation fold
    epochs: int = 25
    batch_size: int = 96  # images per step; pairs per step for cl and kd
    image_size: int = 112
    lr_backbone: float = 1e-4
    lr_head: float = 1e-3
    milestones: tuple[int, ...] = (8, 14, 20)
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # autocast of the network: auto (see Accelerator), fp32 (none) or bf16
    init: str | None = None
    teacher: str | None = None
    cl_a: float = 0.2
    cl_b: float = 1.0
    kd_lambda: float = 100.0
    kd_p: float = 0.5
    augment: bool = True
    tsne: bool = True

    def resolved(self) -> TrainConfig:
        """Check the options and fill the default subset."""
        if self.method not in METHODS:
            raise UsageError(f"unknown method {self.method!r}: choose one of {', '.join(METHODS)}")
        subset = self.subset or ("pe" if self.method in ("cl", "kd") else "nm")
        if subset not in SUBSETS:
            raise UsageError(f"unknown subset {subset!r}: choose one of {', '.join(SUBSETS)}")
        if self.method in ("cl", "kd") and subset != "pe":
            raise UsageError(f"--method {self.method} trains on MSD-PE pairs: use --subset pe")
        if self.teacher is not None and self.method != "kd":
            raise UsageError("--teacher only applies to --method kd")
        if self.device not in DEVICES:
            raise UsageError(f"unknown device {self.device!r}: choose one of {', '.join(DEVICES)}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.epochs < 1 or self.batch_size < 1 or self.image_size < 32:
            raise UsageError("--epochs and --batch-size must be at least 1 and --image-size at least 32")
        if sorted(self.milestones) != list(self.milestones) or any(m < 1 for m in self.milestones):
            raise UsageError(f"--milestones must be increasing epoch numbers, got {','.join(map(str, self.milestones))}")
        if not 0.0 <= self.kd_p <= 1.0:
            raise UsageError(f"--kd-p is a probability, got {self.kd_p}")
        if self.folds is not None and self.folds < 2:
            raise UsageError("--folds must be at least 2")
        return replace(self, subset=subset, milestones=tuple(int(m) for m in self.milestones))

    def fingerprint(self) -> dict[str, Any]:
        """The options that change a fold's result: a re-run into the same RUN_DIR must match them."""
        keep = asdict(self)
        for name in ("folds", "fold", "device", "precision", "tsne"):
            keep.pop(name)
        keep["milestones"] = list(self.milestones)
        return keep


@dataclass(frozen=True)
class StepInfo:
    """What a progress display shows after each training step."""

    fold: int
    phase: str  # "train" or "teacher"
    epoch: int  # 1-based
    epochs: int
    done: int  # samples seen in this epoch
    total: int
    loss: float
    accuracy: float
    images_per_s: float


MonitorFn = Callable[[StepInfo], None]


@dataclass
class EpochStats:
    epoch: int  # 1-based
    lr_backbone: float
    lr_head: float
    loss: float
    accuracy: float
    images_per_s: float


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]
    folds_trained: list[int]
    folds_reused: list[int]
    init: dict[str, Any] | None
    skipped: dict[str, int]
    files: list[Path] = field(default_factory=list)


# ----------------------------------------------------------------------------- devices and batches


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            "--device cuda: PyTorch sees no CUDA GPU on this machine (torch.cuda.is_available() is False); "
            "use --device cpu, or a CUDA build of torch on a machine with an NVIDIA GPU"
        )
    if name not in DEVICES:
        raise UsageError(f"unknown device {name!r}: choose one of {', '.join(DEVICES)}")
    return name


def cpu_has_native_bf16() -> bool:
    """True when the CPU multiplies bf16 in hardware (AVX512-BF16 or AMX), where oneDNN's bf16
    convolutions beat fp32; elsewhere bf16 is emulated and slower than fp32."""
    import torch

    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(check is not None and check() for check in checks)


class Accelerator:
    """Where tensors live and how a step runs: channels-last always, autocast per ``precision``.

    ``precision`` ``auto``: on CUDA bf16 where supported, else fp16 with a gradient scaler; on the
    CPU bf16 when it has native bf16 instructions, else fp32. ``fp32``: no autocast. ``bf16``: bf16
    autocast on either device. Autocast runs convolutions and the classifier in the low precision;
    weights, Adam's state, batch-norm statistics and the losses stay fp32.
    """

    def __init__(self, device: str, precision: str = "auto") -> None:
        import torch

        if precision not in PRECISIONS:
            raise UsageError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.dtype = None
        if precision == "bf16" or (precision == "auto" and not self.cuda and cpu_has_native_bf16()):
            self.dtype = torch.bfloat16
        elif precision == "auto" and self.cuda:
            self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]
        self.scaler = torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1) * 255

    def autocast(self):
        import contextlib

        import torch

        return contextlib.nullcontext() if self.dtype is None else torch.autocast(self.device.type, dtype=self.dtype)

    def prepare(self, model):
        import torch

        return model.to(self.device, memory_format=torch.channels_last)

    def inputs(self, images, augment: bool, generator) -> Any:
        """uint8 N x 3 x S x S on the device -> normalised float, channels-last, augmented when asked."""
        import torch

        x = images.float()
        if augment:
            x = augment_batch(x, generator)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last)

    def backward(self, loss, optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward()
            optimizer.step()


def augment_batch(x, generator, max_angle: float = 10.0, max_shift: float = 0.08, max_zoom: float = 0.08):
    """Random horizontal flip and a small rotation, shift and zoom, per image, in one ``grid_sample``.

    The faces are already aligned, so the warps stay small: they imitate alignment jitter.
    """
    import math

    import torch
    import torch.nn.functional as F

    n = x.shape[0]

    def uniform(low: float, high: float):
        return (torch.rand(n, generator=generator) * (high - low) + low).to(x.device)

    angle = uniform(-max_angle, max_angle) * (math.pi / 180)
    zoom = uniform(1 - max_zoom, 1 + max_zoom)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0).to(x.device)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, uniform(-max_shift, max_shift) * 2], dim=1),
            torch.stack([sin * flip, cos, uniform(-max_shift, max_shift) * 2], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def make_optimizer(model, config: TrainConfig):
    """Adam with the protocol's two groups, and MultiStepLR at the milestones (stepped per epoch)."""
    import torch

    backbone, head = model.parameter_groups()
    optimizer = torch.optim.Adam(
        [{"params": backbone, "lr": config.lr_backbone, "name": "backbone"}, {"params": head, "lr": config.lr_head, "name": "head"}]
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(config.milestones), gamma=GAMMA)
    return optimizer, scheduler


# ----------------------------------------------------------------------------- one fold


def fit(
    model,
    data: FaceData,
    train: np.ndarray,
    config: TrainConfig,
    acc: Accelerator,
    *,
    method: str | None = None,
    teacher=None,
    fold: int = 0,
    phase: str = "train",
    monitor: MonitorFn | None = None,
    images=None,
) -> list[EpochStats]:
    """Train ``model`` in place for ``config.epochs`` epochs and return the per-epoch statistics.

    ``train`` holds row indices (method ``ce``) or ``[non-masked, masked]`` row pairs (``cl``,
    ``kd``). ``images`` is ``data.images`` already moved to the device (moved here when None).
    """
    import torch

    method = method or config.method
    if method == "kd" and teacher is None:
        raise ValueError("method kd needs a teacher")
    images = data.images.to(acc.device) if images is None else images
    labels = torch.tensor(data.label, device=acc.device)
    generator = torch.Generator().manual_seed(config.seed * 1009 + fold * 17 + (phase == "teacher"))
    optimizer, scheduler = make_optimizer(model, config)
    model.train()
    if teacher is not None:
        teacher.eval()
    history: list[EpochStats] = []
    train = np.asarray(train)
    per_sample = 2 if method == "cl" else 1  # images through the trained network per sample
    for epoch in range(1, config.epochs + 1):
        lrs = [g["lr"] for g in optimizer.param_groups]
        order = torch.randperm(len(train), generator=generator).numpy()
        loss_sum, correct, samples, predictions, start = 0.0, 0, 0, 0, time.perf_counter()
        for first in range(0, len(order), config.batch_size):
            chosen = torch.from_numpy(train[order[first : first + config.batch_size]]).to(acc.device)
            with acc.autocast():
                if method == "ce":
                    target = labels[chosen]
                    logits, _ = model(acc.inputs(images[chosen], config.augment, generator))
                    loss = torch.nn.functional.cross_entropy(logits.float(), target)
                elif method == "cl":
                    from .losses import contrastive_loss

                    target = labels[chosen[:, 0]]
                    both = torch.cat([images[chosen[:, 0]], images[chosen[:, 1]]])
                    logits, features = model(acc.inputs(both, config.augment, generator))
                    half = len(target)
                    parts = contrastive_loss(
                        logits[:half], logits[half:], features[:half], features[half:], target, config.cl_a, config.cl_b
                    )
                    loss, target = parts.total, torch.cat([target, target])
                else:
                    from .losses import distillation_loss, student_inputs

                    target = labels[chosen[:, 0]]
                    nonmasked = acc.inputs(images[chosen[:, 0]], config.augment, generator)
                    masked = acc.inputs(images[chosen[:, 1]], config.augment, generator)
                    with torch.no_grad():
                        _, teacher_features = teacher(nonmasked)
                    logits, features = model(student_inputs(nonmasked, masked, config.kd_p, generator))
                    loss = distillation_loss(logits, features, teacher_features, target, config.kd_lambda).total
            acc.backward(loss, optimizer)
            samples += len(chosen)
            loss_sum += float(loss.detach()) * len(chosen)
            correct += int((logits.detach().argmax(1) == target).sum())
            predictions += len(target)
            if monitor is not None:
                monitor(
                    StepInfo(
                        fold=fold, phase=phase, epoch=epoch, epochs=config.epochs, done=samples, total=len(order),
                        loss=loss_sum / samples, accuracy=correct / predictions,
                        images_per_s=samples * per_sample / max(time.perf_counter() - start, 1e-9),
                    )
                )
        scheduler.step()
        elapsed = time.perf_counter() - start
        history.append(
            EpochStats(
                epoch=epoch, lr_backbone=lrs[0], lr_head=lrs[1], loss=loss_sum / max(samples, 1),
                accuracy=correct / max(predictions, 1), images_per_s=samples * per_sample / max(elapsed, 1e-9),
            )
        )
    return history


def predict(model, data: FaceData, rows: np.ndarray, acc: Accelerator, batch_size: int = 256, images=None):
    """Softmax probabilities and penultimate features of ``rows`` (evaluation mode, no augmentation)."""
    import torch

    images = data.images.to(acc.device) if images is None else images
    model.eval()
    probs, feats = [], []
    with torch.no_grad():
        for first in range(0, len(rows), batch_size):
            chosen = torch.from_numpy(np.asarray(rows[first : first + batch_size])).to(acc.device)
            with acc.autocast():
                logits, features = model(acc.inputs(images[chosen], False, None))
            probs.append(torch.softmax(logits.float(), dim=1).cpu())
            feats.append(features.float().cpu())
    if not probs:
        return np.zeros((0, len(data.classes)), np.float32), np.zeros((0, 512), np.float32)
    return torch.cat(probs).numpy(), torch.cat(feats).numpy()


# ----------------------------------------------------------------------------- the run


def fold_dir(run_dir: Path, fold: int) -> Path:
    return Path(run_dir) / "folds" / f"fold-{fold}"


def _write_json(path: Path, payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode())


def _check_run_file(run_dir: Path, payload: dict[str, Any]) -> None:
    """A RUN_DIR belongs to one set of options: resuming with others would mix two experiments."""
    path = run_dir / RUN_FILE
    if not path.exists():
        _write_json(path, payload)
        return
    before = json.loads(path.read_text())
    old, new = before.get("options") or {}, payload["options"]
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if before.get("classes") != payload["classes"]:
        changed.append("classes")
    if changed:
        raise UsageError(
            f"{run_dir} holds a run with other options ({', '.join(changed)} differ): "
            "choose another --out, or delete that folder to start over"
        )


def _teacher(fold: int, train_rows: np.ndarray, config: TrainConfig, data: FaceData, acc: Accelerator, run_dir: Path,
             images, monitor: MonitorFn | None) -> tuple[Any, str]:
    """The frozen KD teacher of a validation fold: ``--teacher FILE``, ``--teacher RUN_DIR`` (its
    model of the same fold), else one trained here with CE on the non-masked training images."""
    from .models import build_model, freeze, load_checkpoint, load_init, save_checkpoint

    if config.teacher is not None:
        given = Path(config.teacher)
        path = fold_dir(given, fold) / "model.pt" if given.is_dir() else given
        if not path.exists():
            raise UsageError(f"--teacher {given}: {path} does not exist (train fold {fold} with --subset nm there first)")
        return freeze(acc.prepare(load_checkpoint(path, data.classes))), str(path)
    path = fold_dir(run_dir, fold) / "teacher.pt"
    if path.exists():  # trained before an interruption
        return freeze(acc.prepare(load_checkpoint(path, data.classes))), str(path)
    import torch

    torch.manual_seed(config.seed * 1009 + fold * 17 + 1)
    teacher = build_model(len(data.classes))
    if config.init:
        load_init(teacher, config.init)
    teacher = acc.prepare(teacher)
    fit(teacher, data, train_rows, config, acc, method="ce", fold=fold, phase="teacher", monitor=monitor, images=images)
    save_checkpoint(teacher, path, data.classes, fold=fold, role="teacher", subset="nm")
    return freeze(teacher), str(path)


def train_fold(data: FaceData, fold: int, config: TrainConfig, acc: Accelerator, run_dir: Path, *,
               images=None, monitor: MonitorFn | None = None) -> dict[str, Any]:
    """Train on every fold but ``fold``, predict ``fold``, and write the fold's files (last: predictions)."""
    import torch

    from .models import build_model, load_init, save_checkpoint

    images = data.images.to(acc.device) if images is None else images
    out = fold_dir(run_dir, fold)
    rows = subset_rows(data, config.subset)
    val_rows = rows[data.fold[rows] == fold]
    if config.method == "ce":
        train = rows[data.fold[rows] != fold]
        n_train_images = len(train)
    else:
        pairs = pe_pairs(data)
        train = pairs[data.fold[pairs[:, 0]] != fold]
        n_train_images = 2 * len(train)
    if len(train) == 0 or len(val_rows) == 0:
        raise UsageError(f"fold {fold} leaves {len(train)} training and {len(val_rows)} validation samples in subset {config.subset}")
    start = time.perf_counter()
    info: dict[str, Any] = {"fold": fold, "train_folds": sorted(int(f) for f in np.unique(data.fold[rows]) if f != fold),
                            "n_train_images": int(n_train_images), "n_val_images": len(val_rows),
                            "device": acc.device.type, "precision": acc.precision}
    teacher = None
    if config.method == "kd":
        nm = np.flatnonzero((data.masked == NON_MASKED) & (data.fold != fold))
        teacher, info["teacher"] = _teacher(fold, nm, config, data, acc, run_dir, images, monitor)
        info["n_teacher_images"] = len(nm) if config.teacher is None else None

    torch.manual_seed(config.seed * 1009 + fold * 17)
    model = build_model(len(data.classes))
    if config.init:
        info["init"] = load_init(model, config.init).summary()
    model = acc.prepare(model)
    history = fit(model, data, train, config, acc, teacher=teacher, fold=fold, monitor=monitor, images=images)
    probs, features = predict(model, data, val_rows, acc, images=images)
    info["seconds"] = round(time.perf_counter() - start, 3)

    save_checkpoint(model, out / "model.pt", data.classes, fold=fold, method=config.method, subset=config.subset)
    _write_json(out / "history.json", [asdict(h) for h in history])
    _write_json(out / "fold.json", info)
    with atomic_path(out / "features.npy") as tmp:
        np.save(tmp, features.astype(np.float16))
    predictions = prediction_frame(data, val_rows, probs, fold)
    with atomic_path(out / DONE_FILE) as tmp:
        predictions.to_parquet(tmp, index=False)
    return info


def prediction_frame(data: FaceData, rows: np.ndarray, probs: np.ndarray, fold: int) -> pd.DataFrame:
    """One row per validation image: ids, true and predicted class, and a probability per class."""
    frame = pd.DataFrame(
        {
            "image_id": data.image_id[rows],
            "fold": np.full(len(rows), fold, dtype=np.int64),
            "label": np.asarray(data.classes, dtype=object)[data.label[rows]],
            "masked": pd.array([None if m not in (MASKED, NON_MASKED) else bool(m == MASKED) for m in data.masked[rows]],
                               dtype="boolean"),
            "pair_id": data.pair_id[rows],
            "predicted": np.asarray(data.classes, dtype=object)[probs.argmax(1)] if len(rows) else np.array([], dtype=object),
        }
    )
    for i, name in enumerate(data.classes):
        frame[f"p_{name}"] = probs[:, i].astype(np.float32)
    return frame


def train_baseline(
    source,
    run_dir: Path | str,
    config: TrainConfig = TrainConfig(),
    *,
    dataset: str | None = None,
    progress: ProgressFn | None = None,
    monitor: MonitorFn | None = None,
    data: FaceData | None = None,
) -> RunResult:
    """Run the protocol on a workspace or published folder and write ``RUN_DIR`` (see the module doc).

    A fold whose ``predictions.parquet`` exists is not trained again, so an interrupted run
    resumes where it stopped when the same command is repeated (temporary files a killed run left
    in ``RUN_DIR`` are deleted first; nothing ever read them). ``data`` skips the loading step
    (it must come from the same source).
    """
    from . import report

    config = config.resolved()
    run_dir = Path(run_dir)
    data = data if data is not None else load_faces(source, dataset=dataset, image_size=config.image_size, progress=progress)
    if data.images.shape[-1] != config.image_size:
        raise UsageError(f"the faces were loaded at {data.images.shape[-1]} pixels, --image-size asks {config.image_size}")
    rows = subset_rows(data, config.subset)
    if len(rows) == 0:
        raise UsageError(f"subset {config.subset} is empty in {data.origin.get('path')}: "
                         + ("run ferdata pairs first" if config.subset == "pe" else "check the masked column"))
    available = sorted(int(f) for f in np.unique(data.fold[rows]))
    if config.folds is not None and available != list(range(config.folds)):
        raise UsageError(
            f"--folds {config.folds}: the data's fold column holds folds {','.join(map(str, available))}; "
            f"run ferdata folds --k {config.folds} first"
        )
    if len(available) < 2:
        raise UsageError(f"subset {config.subset} has {len(available)} fold: run ferdata folds --k 10 first")
    if config.fold is not None and config.fold not in available:
        raise UsageError(f"--fold {config.fold} is not one of the data's folds ({','.join(map(str, available))})")
    acc = Accelerator(resolve_device(config.device), config.precision)
    _check_run_file(run_dir, {
        "options": config.fingerprint(), "classes": list(data.classes), "data": data.origin,
        "folds": available, "skipped": data.skipped,
    })
    # A run killed while writing leaves temporary files (a torn checkpoint among them) that nothing
    # reads: clear them. Two runs into one RUN_DIR at once are not supported.
    for folder in (run_dir, *sorted(run_dir.glob("folds/fold-*/"))):
        remove_stale_temps(folder)
    if config.init:  # fail before training if the file does not fit, and say what it fills
        from .models import build_model, load_init

        init = load_init(build_model(len(data.classes)), config.init).summary()
    else:
        init = None

    images = data.images.to(acc.device)
    wanted = [config.fold] if config.fold is not None else available
    trained, reused = [], []
    for fold in wanted:
        if (fold_dir(run_dir, fold) / DONE_FILE).exists():
            reused.append(fold)
            continue
        train_fold(data, fold, config, acc, run_dir, images=images, monitor=monitor)
        trained.append(fold)

    finished = [f for f in available if (fold_dir(run_dir, f) / DONE_FILE).exists()]
    oof = pd.concat([pd.read_parquet(fold_dir(run_dir, f) / DONE_FILE) for f in finished], ignore_index=True)
    with atomic_path(run_dir / "oof.parquet") as tmp:
        oof.to_parquet(tmp, index=False)
    summary, files = report.write_reports(run_dir, oof, data.classes, config=config, folds_expected=available,
                                         tsne=config.tsne)
    return RunResult(run_dir=run_dir, summary=summary, folds_trained=trained, folds_reused=reused, init=init,
                     skipped=data.skipped, files=[run_dir / "oof.parquet", *files])
