"""The protocols: MSD-E's k-fold cross-validation and a dataset's official split, resumable.

Two protocols (``protocol``; default ``folds`` where the data has folds and no official split,
else ``split``):

- ``folds`` (the MSD-E paper, section 3.1): for each validation fold a fresh ResNet-18 trains on
  the other folds and predicts the validation fold; the last epoch's model is the one reported.
- ``split`` (FER2013, FER+, FERV39k, Occlu-FER): one network trains on ``train``; where the
  source has both ``val`` and ``test`` the epoch is chosen on ``val`` and ``test`` is reported
  (FER2013: PublicTest selects, PrivateTest reports); with ``test`` alone or ``val`` alone, the
  last epoch is reported on it. Video frames train as images and are evaluated per clip too.

Each round (a fold, or the split) trains with Adam in two parameter groups (backbone
``lr_backbone``, classifier ``lr_head``) and a MultiStepLR that divides both by 10 at the
milestone epochs, counted from 0 like torch's ``MultiStepLR``: with ``8,14,20`` the 9th, 15th and
21st epochs run at the lower rates. After every epoch the evaluated images are predicted (the
per-epoch validation log): a diagnostic under ``folds``, the selection rule under ``split`` with
``val`` and ``test``.

Methods (paper, section 3.3): ``ce`` trains on single images of the subset; ``cl`` feeds both
images of each MSD-PE pair through the one network; ``kd`` distils a frozen teacher trained on
non-masked images into a student that sees the masked image, or with probability p the
non-masked one. Both images of a pair get one draw of the augmentation. Without ``teacher`` the
teacher of each round is trained here, on the non-masked images of that round's training part
only, so that no evaluated face reaches the student through it; ``teacher=RUN_DIR`` must come
from a run on the same dataset, folds (or split) and image size, trained on ``nm`` with ``ce``.

Layout of ``RUN_DIR``::

    run.json                     options, data origin, classes (a re-run must match them)
    assignment.parquet           image_id, fold, split of every usable image (checked by --teacher)
    folds/fold-<i>/ or split/    one round:
        model.pt                 the reported network (written atomically)
        teacher.pt               KD only: the round's teacher when trained here
        history.json             per epoch: loss, accuracy, learning rates, images/s, validation
        fold.json                rows used, steps per epoch, --init report, chosen epoch, timings
        features.npy             pooled features of the evaluated images (t-SNE)
        predictions.parquet      written last: its presence marks the round finished
    oof.parquet | predictions.parquet   out-of-fold (folds) or evaluated-split (split) predictions
    epochs.csv                   the per-epoch validation log of every round
    results.json, results.md, confusion-*.png, tsne.png   (see :mod:`ferdata.train.report`)

Speed: the faces sit in memory as one uint8 tensor (on the GPU when training there, if it fits)
or, beyond the memory budget, in a file on disk read a batch ahead; batches are gathered
by index and augmented as whole tensors (random flip and a small random affine warp), networks
run channels-last and under autocast (``precision``, see :class:`Accelerator`): on CUDA bf16
where supported, else fp16 with a gradient scaler; on a CPU with native bf16 instructions
(AVX512-BF16 or AMX) bf16, elsewhere fp32. Weights, optimizer state and losses stay fp32.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UsageError
from ..fsutil import atomic_path, atomic_write_bytes, remove_stale_temps
from ..progress import ProgressFn
from ..workspace import WorkspaceLike
from .config import DEVICES, PRECISIONS, TrainConfig
from .data import MASKED, NO_FOLD_VALUE, NON_MASKED, DiskFaces, FaceData, load_faces, pe_pairs, subset_rows

GAMMA = 0.1  # "reduced by a factor of 10" (paper, section 3.1)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RUN_FILE = "run.json"
DONE_FILE = "predictions.parquet"
ASSIGNMENT_FILE = "assignment.parquet"
NO_FOLD = "no fold (run ferdata folds)"
NO_SPLIT = "no split (the source gives none for these rows)"


@dataclass(frozen=True)
class StepInfo:
    """What a progress display shows after each training step."""

    fold: int | str  # the round: a fold number, or "split"
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
    val: dict[str, Any] | None = None  # the evaluated images after this epoch (per-epoch log)


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]
    folds_trained: list[int | str]
    folds_reused: list[int | str]
    init: dict[str, Any] | None
    skipped: dict[str, int]
    files: list[Path] = field(default_factory=list)
    protocol: str = "folds"
    config: TrainConfig | None = None
    warnings: list[str] = field(default_factory=list)
    storage: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- devices and batches


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            "device=cuda: PyTorch sees no CUDA GPU on this machine (torch.cuda.is_available() is False); "
            "use device=cpu, or a CUDA build of torch on a machine with an NVIDIA GPU"
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

    def inputs(self, images, theta=None) -> Any:
        """uint8 N x 3 x S x S on the device -> normalised float, channels-last, warped by ``theta``
        (N x 2 x 3 affine matrices from :func:`draw_augment`) when given."""
        import torch

        x = images.float()
        if theta is not None:
            x = apply_augment(x, theta)
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


class DeviceFaces:
    """The faces as a training step reads them: gathered by row index, on the device.

    In-memory faces move to the GPU once when they take at most half its free memory; faces on
    disk (:class:`~ferdata.train.data.DiskFaces`) are read a batch ahead by a helper thread while
    the current batch trains (the reads and torch's kernels release the GIL)."""

    def __init__(self, images: Any, acc: Accelerator) -> None:
        import torch

        self.device = acc.device
        self.disk = images if isinstance(images, DiskFaces) else None
        self.tensor = None
        if self.disk is None:
            self.tensor = images
            if acc.cuda and images.numel() <= 0.5 * torch.cuda.mem_get_info(acc.device)[0]:
                self.tensor = images.to(acc.device)

    def _host(self, rows: np.ndarray):
        assert self.disk is not None  # only faces on disk go through the host
        batch = self.disk.take(rows)
        return batch.pin_memory() if self.device.type == "cuda" else batch

    def take(self, rows: np.ndarray):
        import torch

        rows = np.asarray(rows, dtype=np.int64)
        if self.tensor is None:
            return self._host(rows).to(self.device, non_blocking=True)
        if self.tensor.device.type == "cpu":  # numpy's gather copies whole faces; torch's indexing goes byte by byte
            return torch.from_numpy(self.tensor.numpy()[rows]).to(self.device, non_blocking=True)
        return torch.index_select(self.tensor, 0, torch.from_numpy(rows).to(self.tensor.device))

    def stream(self, batches: Sequence[np.ndarray]) -> Iterator[Any]:
        """``take`` of each batch in turn; from disk, the next batch is read while this one trains."""
        if self.disk is None or len(batches) < 2:
            for rows in batches:
                yield self.take(rows)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1) as reader:
            pending = reader.submit(self._host, np.asarray(batches[0], dtype=np.int64))
            for i in range(len(batches)):
                host = pending.result()
                if i + 1 < len(batches):
                    pending = reader.submit(self._host, np.asarray(batches[i + 1], dtype=np.int64))
                yield host.to(self.device, non_blocking=True)


def draw_augment(n: int, generator, device, max_angle: float = 10.0, max_shift: float = 0.08, max_zoom: float = 0.08):
    """One random horizontal flip, rotation, shift and zoom per image, as N x 2 x 3 affine matrices.

    The faces are already aligned, so the warps stay small: they imitate alignment jitter. The
    two images of a pair take the same matrix (the authors' code applies one albumentations draw
    to both), so CL and KD never compare a face with the mirror image of its twin.
    """
    import torch

    def uniform(low: float, high: float):
        return torch.rand(n, generator=generator) * (high - low) + low

    angle = uniform(-max_angle, max_angle) * (math.pi / 180)
    zoom = uniform(1 - max_zoom, 1 + max_zoom)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, uniform(-max_shift, max_shift) * 2], dim=1),
            torch.stack([sin * flip, cos, uniform(-max_shift, max_shift) * 2], dim=1),
        ],
        dim=1,
    )
    return theta.to(device)


def apply_augment(x, theta):
    """Warp a float batch by per-image affine matrices in one ``grid_sample``."""
    import torch.nn.functional as F

    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def augment_batch(x, generator, max_angle: float = 10.0, max_shift: float = 0.08, max_zoom: float = 0.08):
    """Random flip and a small rotation, shift and zoom, drawn independently per image."""
    return apply_augment(x, draw_augment(x.shape[0], generator, x.device, max_angle, max_shift, max_zoom))


def make_optimizer(model, config: TrainConfig):
    """Adam with the protocol's two groups, and MultiStepLR at the milestones (stepped per epoch)."""
    import torch

    backbone, head = model.parameter_groups()
    optimizer = torch.optim.Adam(
        [
            {"params": backbone, "lr": config.lr_backbone, "name": "backbone"},
            {"params": head, "lr": config.lr_head, "name": "head"},
        ]
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(config.milestones), gamma=GAMMA)
    return optimizer, scheduler


def steps_per_epoch(samples: int, batch_size: int) -> int:
    """Optimiser steps in one epoch: the last batch may be smaller, never dropped."""
    return math.ceil(samples / batch_size)


# ----------------------------------------------------------------------------- one network


def fit(
    model,
    data: FaceData,
    train: np.ndarray,
    config: TrainConfig,
    acc: Accelerator,
    *,
    method: str | None = None,
    teacher=None,
    fold: int | str = 0,
    phase: str = "train",
    monitor: MonitorFn | None = None,
    faces: DeviceFaces | None = None,
    after_epoch: Callable[[Any, int], dict[str, Any]] | None = None,
) -> list[EpochStats]:
    """Train ``model`` in place for ``config.epochs`` epochs and return the per-epoch statistics.

    ``train`` holds row indices (method ``ce``) or ``[non-masked, masked]`` row pairs (``cl``,
    ``kd``). ``after_epoch(model, epoch)`` runs after each epoch (the model in evaluation mode)
    and its result is the epoch's ``val`` entry; it must not draw from the training's generator.
    """
    import torch

    from .losses import contrastive_loss, distillation_loss, student_inputs

    method = method or config.method
    if method == "kd" and teacher is None:
        raise ValueError("method kd needs a teacher")
    faces = faces or DeviceFaces(data.images, acc)
    labels = torch.tensor(data.label, device=acc.device)
    generator = torch.Generator().manual_seed(config.seed * 1009 + _round_number(fold) * 17 + (phase == "teacher"))
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
        batches = [train[order[first : first + config.batch_size]] for first in range(0, len(order), config.batch_size)]
        # what each step reads: the rows, or the non-masked then the masked side of each pair
        wanted = [b if method == "ce" else np.concatenate([b[:, 0], b[:, 1]]) for b in batches]
        loss_sum, correct, samples, predictions, start = 0.0, 0, 0, 0, time.perf_counter()
        for chosen, images in zip(batches, faces.stream(wanted), strict=True):
            n = len(chosen)
            theta = draw_augment(n, generator, acc.device) if config.augment else None
            with acc.autocast():
                if method == "ce":
                    target = labels[torch.from_numpy(chosen).to(acc.device)]
                    logits, _ = model(acc.inputs(images, theta))
                    loss = torch.nn.functional.cross_entropy(logits.float(), target)
                else:
                    target = labels[torch.from_numpy(chosen[:, 0]).to(acc.device)]
                    both = acc.inputs(images, None if theta is None else torch.cat([theta, theta]))  # one draw per pair
                    if method == "cl":
                        logits, features = model(both, config.feature)
                        parts = contrastive_loss(
                            logits[:n], logits[n:], features[:n], features[n:], target, config.cl_a, config.cl_b
                        )
                        loss, target = parts.total, torch.cat([target, target])
                    else:
                        nonmasked, masked = both[:n], both[n:]
                        with torch.no_grad():
                            _, teacher_features = teacher(nonmasked, config.feature)
                        logits, features = model(
                            student_inputs(nonmasked, masked, config.kd_p, generator), config.feature
                        )
                        loss = distillation_loss(logits, features, teacher_features, target, config.kd_lambda).total
            acc.backward(loss, optimizer)
            samples += n
            loss_sum += float(loss.detach()) * n
            correct += int((logits.detach().argmax(1) == target).sum())
            predictions += len(target)
            if monitor is not None:
                monitor(
                    StepInfo(
                        fold=fold,
                        phase=phase,
                        epoch=epoch,
                        epochs=config.epochs,
                        done=samples,
                        total=len(order),
                        loss=loss_sum / samples,
                        accuracy=correct / predictions,
                        images_per_s=samples * per_sample / max(time.perf_counter() - start, 1e-9),
                    )
                )
        scheduler.step()
        elapsed = time.perf_counter() - start
        stats = EpochStats(
            epoch=epoch,
            lr_backbone=lrs[0],
            lr_head=lrs[1],
            loss=loss_sum / max(samples, 1),
            accuracy=correct / max(predictions, 1),
            images_per_s=samples * per_sample / max(elapsed, 1e-9),
        )
        if after_epoch is not None:
            stats.val = after_epoch(model, epoch)
            model.train()
        history.append(stats)
    return history


def _round_number(fold: int | str) -> int:
    return fold if isinstance(fold, int) else 0


def predict(
    model, data: FaceData, rows: np.ndarray, acc: Accelerator, batch_size: int = 256, faces: DeviceFaces | None = None
):
    """Softmax probabilities and pooled features of ``rows`` (evaluation mode, no augmentation)."""
    import torch

    faces = faces or DeviceFaces(data.images, acc)
    rows = np.asarray(rows, dtype=np.int64)
    model.eval()
    probs, feats = [], []
    batches = [rows[first : first + batch_size] for first in range(0, len(rows), batch_size)]
    with torch.no_grad():
        for images in faces.stream(batches):
            with acc.autocast():
                logits, features = model(acc.inputs(images))
            probs.append(torch.softmax(logits.float(), dim=1).cpu())
            feats.append(features.float().cpu())
    if not probs:
        return np.zeros((0, len(data.classes)), np.float32), np.zeros((0, 512), np.float32)
    return torch.cat(probs).numpy(), torch.cat(feats).numpy()


# ----------------------------------------------------------------------------- rounds of a protocol


@dataclass
class Round:
    """One network to train and evaluate: a validation fold, or the official split."""

    name: int | str  # the fold number, or "split"
    folder: str  # relative to RUN_DIR
    train: np.ndarray  # rows (ce) or [non-masked, masked] row pairs (cl, kd)
    evaluate: np.ndarray  # rows whose predictions are reported
    watch: np.ndarray | None  # rows predicted after every epoch (the per-epoch log)
    select: bool  # choose the reported epoch on ``watch`` (split with val and test)
    teacher_rows: np.ndarray  # kd: the non-masked training images a teacher trained here sees
    evaluated_split: str | None = None
    watched_split: str | None = None

    @property
    def n_train_images(self) -> int:
        return int(self.train.size)


@dataclass
class Plan:
    protocol: str
    rounds: list[Round]
    left_out: dict[str, int]
    available: list[int | str]  # folds of the subset, or ["split"]


def plan_rounds(data: FaceData, config: TrainConfig) -> Plan:
    """The rounds of the protocol on the data's subset, and the subset's rows left out (by reason)."""
    assert data.split is not None  # FaceData.__post_init__ fills it
    rows = subset_rows(data, config.subset)
    if len(rows) == 0:
        raise UsageError(
            f"subset {config.subset} is empty in {data.origin.get('path')}: "
            + ("run ferdata pairs first" if config.subset == "pe" else "check the masked column, or choose subset=mix")
        )
    paired = config.method in ("cl", "kd")
    left_out: dict[str, int] = {}
    if config.protocol == "folds":
        missing = rows[data.fold[rows] == NO_FOLD_VALUE]
        if len(missing):
            left_out[NO_FOLD] = len(missing)
        rows = rows[data.fold[rows] != NO_FOLD_VALUE]
        available = sorted(int(f) for f in np.unique(data.fold[rows]))
        if config.folds is not None and available != list(range(config.folds)):
            raise UsageError(
                f"folds={config.folds}: the data's fold column holds folds {','.join(map(str, available)) or 'none'}; "
                f"make those folds first: make_folds(ws, {config.folds})"
            )
        if len(available) < 2:
            raise UsageError(
                f"subset {config.subset} has {len(available)} fold: make folds first, e.g. make_folds(ws, 10)"
            )
        if config.fold is not None and config.fold not in available:
            raise UsageError(f"fold={config.fold} is not one of the data's folds ({','.join(map(str, available))})")
        pairs = pe_pairs(data, rows=rows) if paired else None
        rounds = []
        for fold in available:
            train = pairs[data.fold[pairs[:, 0]] != fold] if pairs is not None else rows[data.fold[rows] != fold]
            evaluate = rows[data.fold[rows] == fold]
            teacher_rows = np.flatnonzero(
                (data.masked == NON_MASKED) & (data.fold != fold) & (data.fold != NO_FOLD_VALUE)
            )
            rounds.append(
                Round(
                    fold,
                    f"folds/fold-{fold}",
                    train,
                    evaluate,
                    evaluate if config.epoch_log else None,
                    False,
                    teacher_rows,
                )
            )
        return Plan("folds", rounds, left_out, list(available))

    missing = rows[pd.isna(data.split[rows])]
    if len(missing):
        left_out[NO_SPLIT] = len(missing)
    rows = rows[pd.notna(data.split[rows])]
    part = {name: rows[data.split[rows] == name] for name in ("train", "val", "test")}
    if not len(part["train"]):
        raise UsageError(
            f"protocol=split: no image of subset {config.subset} is in the train split "
            f"(splits present: {', '.join(data.splits) or 'none'}); run ferdata folds, then protocol=folds"
        )
    evaluated = "test" if len(part["test"]) else "val"
    if not len(part[evaluated]):
        raise UsageError(
            f"protocol=split: subset {config.subset} has no val or test image to evaluate on; "
            "run ferdata folds, then protocol=folds"
        )
    select = evaluated == "test" and len(part["val"]) > 0
    watched = "val" if select else (evaluated if config.epoch_log else None)
    train = part["train"]
    if paired:
        train = pe_pairs(data, rows=train)
        if not len(train):
            raise UsageError(f"method={config.method}: the train split holds no MSD-PE pair")
    teacher_rows = np.flatnonzero((data.masked == NON_MASKED) & (data.split == "train"))
    round_ = Round(
        "split",
        "split",
        train,
        part[evaluated],
        part[watched] if watched else None,
        select,
        teacher_rows,
        evaluated_split=evaluated,
        watched_split=watched,
    )
    return Plan("split", [round_], left_out, ["split"])


# ----------------------------------------------------------------------------- the teacher


def _write_json(path: Path, payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode())


def assignment_frame(data: FaceData) -> pd.DataFrame:
    """Where each usable image sits: the fold and split a teacher run is checked against."""
    return (
        pd.DataFrame(
            {
                "image_id": data.image_id.astype(str),
                # numpy's stubs take the None for a missing x argument (the one-argument overload)
                "fold": pd.array(np.where(data.fold == NO_FOLD_VALUE, None, data.fold), dtype="Int64"),  # type: ignore[call-overload]
                "split": pd.array(data.split, dtype="string"),
            }
        )
        .sort_values("image_id", kind="stable")
        .reset_index(drop=True)
    )


def check_teacher_run(teacher_dir: Path, data: FaceData, config: TrainConfig) -> None:
    """Refuse a teacher run that saw other data than this run's rounds allow (one line: which).

    The teacher of round i must not have trained on round i's evaluated images: same dataset,
    same protocol and the same fold (or split) for every image both runs know; trained on the
    non-masked images only (``subset nm``, ``method ce``) at this run's image size."""
    where = f"teacher={teacher_dir}"
    path = teacher_dir / RUN_FILE
    if not path.is_file():
        raise UsageError(f"{where} holds no {RUN_FILE}: pass the RUN_DIR of a train-baseline run, or a checkpoint file")
    run = json.loads(path.read_text())
    options, origin = run.get("options") or {}, run.get("data") or {}
    if origin.get("dataset") != data.origin.get("dataset"):
        raise UsageError(
            f"{where} was trained on dataset {origin.get('dataset')}, this run is on {data.origin.get('dataset')}"
        )
    protocol = options.get("protocol") or "folds"
    if protocol != config.protocol:
        raise UsageError(f"{where} used protocol {protocol}, this run uses {config.protocol}")
    if options.get("subset") != "nm" or options.get("method") != "ce":
        raise UsageError(
            f"{where} was trained on subset {options.get('subset')} with method {options.get('method')}: "
            "a KD teacher is trained on the non-masked images only (subset nm, method ce)"
        )
    if options.get("image_size") != config.image_size:
        raise UsageError(
            f"{where} was trained at {options.get('image_size')} pixels, this run uses {config.image_size}"
        )
    if run.get("classes") != list(data.classes):
        raise UsageError(
            f"{where} has the classes {', '.join(run.get('classes') or [])}, this data {', '.join(data.classes)}"
        )
    table = teacher_dir / ASSIGNMENT_FILE
    if not table.is_file():
        raise UsageError(
            f"{where} records no fold assignment ({ASSIGNMENT_FILE}; an older ferdata trained it): "
            "train the teacher again"
        )
    column = "fold" if config.protocol == "folds" else "split"
    theirs = pd.read_parquet(table)[["image_id", column]]
    both = assignment_frame(data)[["image_id", column]].merge(theirs, on="image_id", suffixes=("_here", "_there"))
    if both.empty:
        raise UsageError(f"{where} shares no image with this run's data: it was trained on other images")
    here, there = (both[f"{column}_{side}"].astype("string").fillna("none") for side in ("here", "there"))
    differ = (here != there).to_numpy(bool)
    if differ.any():
        first = both[differ].iloc[0]
        raise UsageError(
            f"{where} has another {column} assignment: {int(differ.sum())} of {len(both)} shared images sit in another "
            f"{column} (e.g. {first['image_id']}: {column} {first[f'{column}_there']} there, {column} {first[f'{column}_here']} here); "
            f"train the teacher again on the current {'folds' if column == 'fold' else 'splits'}"
        )


def _teacher(
    round_: Round,
    config: TrainConfig,
    data: FaceData,
    acc: Accelerator,
    run_dir: Path,
    faces: DeviceFaces,
    monitor: MonitorFn | None,
) -> tuple[Any, str]:
    """The frozen KD teacher of a round: ``teacher`` FILE, ``teacher`` RUN_DIR (its model of the
    same round), else one trained here with CE on the round's non-masked training images."""
    from .models import build_model, freeze, load_checkpoint, load_init, save_checkpoint

    if config.teacher is not None:
        given = Path(config.teacher)
        path = given / round_.folder / "model.pt" if given.is_dir() else given
        if not path.exists():
            raise UsageError(
                f"teacher={given}: {path} does not exist (train {round_.folder} with subset=nm there first)"
            )
        return freeze(acc.prepare(load_checkpoint(path, data.classes))), str(path)
    path = run_dir / round_.folder / "teacher.pt"
    if path.exists():  # trained before an interruption
        return freeze(acc.prepare(load_checkpoint(path, data.classes))), str(path)
    if not len(round_.teacher_rows):
        raise UsageError(f"{round_.folder}: no non-masked training image to train the KD teacher on")
    import torch

    torch.manual_seed(config.seed * 1009 + _round_number(round_.name) * 17 + 1)
    teacher = build_model(len(data.classes))
    if config.init:
        load_init(teacher, config.init)
    teacher = acc.prepare(teacher)
    fit(
        teacher,
        data,
        round_.teacher_rows,
        config,
        acc,
        method="ce",
        fold=round_.name,
        phase="teacher",
        monitor=monitor,
        faces=faces,
    )
    save_checkpoint(teacher, path, data.classes, fold=round_.name, role="teacher", subset="nm")
    return freeze(teacher), str(path)


# ----------------------------------------------------------------------------- one round


def prediction_frame(data: FaceData, rows: np.ndarray, probs: np.ndarray, fold: int | None) -> pd.DataFrame:
    """One row per evaluated image: ids, fold (the validation fold under ``folds``, the image's
    own under ``split``), split, clip, true and predicted class, and a probability per class."""
    rows = np.asarray(rows, dtype=np.int64)
    assert data.split is not None and data.clip_id is not None  # FaceData.__post_init__ fills them
    folds = (
        np.full(len(rows), fold)
        if fold is not None
        else np.where(data.fold[rows] == NO_FOLD_VALUE, None, data.fold[rows])
    )
    frame = pd.DataFrame(
        {
            "image_id": data.image_id[rows],
            "fold": pd.array(folds, dtype="Int64"),
            "split": data.split[rows],
            "clip_id": data.clip_id[rows],
            "label": np.asarray(data.classes, dtype=object)[data.label[rows]],
            "masked": pd.array(
                [None if m not in (MASKED, NON_MASKED) else bool(m == MASKED) for m in data.masked[rows]],
                dtype="boolean",
            ),
            "pair_id": data.pair_id[rows],
            "predicted": np.asarray(data.classes, dtype=object)[probs.argmax(1)]
            if len(rows)
            else np.array([], dtype=object),
        }
    )
    for i, name in enumerate(data.classes):
        frame[f"p_{name}"] = probs[:, i].astype(np.float32)
    return frame


def train_round(
    data: FaceData,
    round_: Round,
    config: TrainConfig,
    acc: Accelerator,
    run_dir: Path,
    *,
    faces: DeviceFaces | None = None,
    monitor: MonitorFn | None = None,
) -> dict[str, Any]:
    """Train one round's network, predict its evaluated images, write its files (last: predictions)."""
    import torch

    from . import report
    from .models import build_model, load_init, save_checkpoint

    faces = faces or DeviceFaces(data.images, acc)
    out = run_dir / round_.folder
    fold = round_.name if isinstance(round_.name, int) else None
    if len(round_.train) == 0 or len(round_.evaluate) == 0:
        raise UsageError(
            f"{round_.folder} leaves {len(round_.train)} training and {len(round_.evaluate)} evaluated "
            f"samples in subset {config.subset}"
        )
    start = time.perf_counter()
    info: dict[str, Any] = {
        "round": round_.name,
        "n_train_images": round_.n_train_images,
        "n_val_images": len(round_.evaluate),
        "n_train_samples": len(round_.train),
        "steps_per_epoch": steps_per_epoch(len(round_.train), config.batch_size),
        "device": acc.device.type,
        "precision": acc.precision,
    }
    if fold is not None:
        info["fold"] = fold
        info["train_folds"] = sorted(int(f) for f in np.unique(data.fold[round_.train.ravel()]))
    else:
        info["evaluated_split"] = round_.evaluated_split
        info["watched_split"] = round_.watched_split
    teacher = None
    if config.method == "kd":
        teacher, info["teacher"] = _teacher(round_, config, data, acc, run_dir, faces, monitor)
        if config.teacher is None:
            info["n_teacher_images"] = len(round_.teacher_rows)
            info["teacher_steps_per_epoch"] = steps_per_epoch(len(round_.teacher_rows), config.batch_size)

    torch.manual_seed(config.seed * 1009 + _round_number(round_.name) * 17)
    model = build_model(len(data.classes))
    if config.init:
        info["init"] = load_init(model, config.init).summary()
    model = acc.prepare(model)

    best: dict[str, Any] = {"score": -1.0, "epoch": None, "state": None}

    def after_epoch(net, epoch: int) -> dict[str, Any]:
        assert round_.watch is not None  # passed on below only when the round has rows to watch
        probs, _ = predict(net, data, round_.watch, acc, faces=faces)
        metrics = report.epoch_metrics(prediction_frame(data, round_.watch, probs, fold), data.classes)
        if round_.select and metrics["score"] > best["score"]:  # ties keep the earlier epoch
            best.update(
                score=metrics["score"], epoch=epoch, state={k: v.detach().clone() for k, v in net.state_dict().items()}
            )
        return metrics

    watch = after_epoch if round_.watch is not None and len(round_.watch) else None
    history = fit(
        model,
        data,
        round_.train,
        config,
        acc,
        teacher=teacher,
        fold=round_.name,
        monitor=monitor,
        faces=faces,
        after_epoch=watch,
    )
    if round_.select and best["state"] is not None:
        model.load_state_dict(best["state"])
        info["selection"] = {
            "split": round_.watched_split,
            "epoch": best["epoch"],
            "score": best["score"],
            "rule": "highest "
            + ("clip accuracy (WAR)" if data.is_video else "accuracy")
            + f" on {round_.watched_split}",
        }
    else:
        info["selection"] = {"split": None, "epoch": config.epochs, "rule": "last epoch"}
    probs, features = predict(model, data, round_.evaluate, acc, faces=faces)
    info["seconds"] = round(time.perf_counter() - start, 3)

    save_checkpoint(model, out / "model.pt", data.classes, fold=round_.name, method=config.method, subset=config.subset)
    _write_json(out / "history.json", [asdict(h) for h in history])
    _write_json(out / "fold.json", info)
    with atomic_path(out / "features.npy") as tmp:
        np.save(tmp, features.astype(np.float16))
    predictions = prediction_frame(data, round_.evaluate, probs, fold)
    with atomic_path(out / DONE_FILE) as tmp:
        predictions.to_parquet(tmp, index=False)
    return info


# ----------------------------------------------------------------------------- the run


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
            "choose another run_dir=DIR, or delete that folder to start over"
        )


def default_run_dir(source: Any, config: TrainConfig) -> Path:
    """``<workspace>/runs/<subset>-<method>`` (``split-…`` under protocol split); for a published
    folder the same under the current directory."""
    from ..workspace import Workspace

    root = (
        source.root
        if isinstance(source, Workspace)
        else (Path(source) if (Path(source) / "manifests").is_dir() else Path.cwd())
    )
    name = f"{config.subset}-{config.method}"
    return root / "runs" / (f"split-{name}" if config.protocol == "split" else name)


def initialisation(config: TrainConfig, report: dict[str, Any] | None) -> dict[str, Any]:
    """How the networks started: the paper's face-recognition weights, or random weights."""
    if not config.init:
        return {"kind": "random", "label": "random initialisation"}
    return {"kind": "checkpoint", "label": f"initialised from {Path(config.init).name}", **(report or {})}


def train_baseline(
    source: WorkspaceLike,
    run_dir: Path | str | None = None,
    config: TrainConfig = TrainConfig(),
    *,
    dataset: str | None = None,
    progress: ProgressFn | None = None,
    monitor: MonitorFn | None = None,
    data: FaceData | None = None,
) -> RunResult:
    """Run the protocol on a workspace or published folder and write ``RUN_DIR`` (see the module doc).

    A round whose ``predictions.parquet`` exists is not trained again, so an interrupted run
    resumes where it stopped when the same command is repeated (temporary files a killed run left
    in ``RUN_DIR`` are deleted first; nothing ever read them). ``data`` skips the loading step
    (it must come from the same source, at the configured image size). ``run_dir`` None:
    :func:`default_run_dir`.
    """
    from . import report

    config = config.resolved()
    staged = Path(run_dir) if run_dir is not None else None
    assert config.image_size is not None  # resolved() fills it
    if data is None:
        cache = staged / "cache" if staged is not None else None
        data = load_faces(
            source,
            dataset=dataset,
            image_size=config.image_size,
            memory_budget=config.memory_budget,
            cache_dir=cache,
            progress=progress,
        )
    if data.image_size != config.image_size:
        raise UsageError(f"the faces were loaded at {data.image_size} pixels, but image_size={config.image_size}")
    config = config.for_data(data)
    run_dir = staged if staged is not None else default_run_dir(source, config)
    plan = plan_rounds(data, config)
    warnings: list[str] = []
    if config.teacher is not None:
        if Path(config.teacher).is_dir():
            check_teacher_run(Path(config.teacher), data, config)
        else:
            warnings.append(
                f"teacher={config.teacher} is a checkpoint file: ferdata cannot check which images it was trained on; "
                "if they include evaluated images, KD's numbers are optimistic (give the RUN_DIR of a subset nm run instead)"
            )
    acc = Accelerator(resolve_device(config.device), config.precision)
    origin = {k: data.origin.get(k) for k in ("kind", "path", "dataset")}
    skipped = {**data.skipped, **plan.left_out}
    _check_run_file(
        run_dir,
        {
            "options": config.fingerprint(),
            "classes": list(data.classes),
            "data": origin,
            "folds": plan.available,
            "skipped": skipped,
        },
    )
    # A run killed while writing leaves temporary files (a torn checkpoint among them) that nothing
    # reads: clear them. Two runs into one RUN_DIR at once are not supported.
    for folder in (run_dir, *sorted(run_dir.glob("folds/fold-*/")), run_dir / "split", run_dir / "cache"):
        if folder.is_dir():
            remove_stale_temps(folder)
    with atomic_path(run_dir / ASSIGNMENT_FILE) as tmp:
        assignment_frame(data).to_parquet(tmp, index=False)
    init = None
    if config.init:  # fail before training if the file does not fit, and say what it fills
        from .models import build_model, load_init

        init = load_init(build_model(len(data.classes)), config.init).summary()

    faces = DeviceFaces(data.images, acc)
    wanted = [r for r in plan.rounds if config.fold is None or r.name == config.fold]
    trained, reused = [], []
    for round_ in wanted:
        if (run_dir / round_.folder / DONE_FILE).exists():
            reused.append(round_.name)
            continue
        train_round(data, round_, config, acc, run_dir, faces=faces, monitor=monitor)
        trained.append(round_.name)

    finished = [r for r in plan.rounds if (run_dir / r.folder / DONE_FILE).exists()]
    predictions = pd.concat([pd.read_parquet(run_dir / r.folder / DONE_FILE) for r in finished], ignore_index=True)
    name = "oof.parquet" if plan.protocol == "folds" else "predictions.parquet"
    with atomic_path(run_dir / name) as tmp:
        predictions.to_parquet(tmp, index=False)
    context = {
        "protocol": plan.protocol,
        "dataset": data.origin.get("dataset"),
        "initialisation": initialisation(config, init),
        "left_out": skipped,
        "warnings": warnings,
        "rounds": {r.name: _read_round(run_dir / r.folder) for r in finished},
        "is_video": data.is_video,
    }
    summary, files = report.write_reports(
        run_dir,
        predictions,
        data.classes,
        config=config,
        folds_expected=plan.available,
        context=context,
        tsne=config.tsne,
    )
    storage = {k: data.origin.get(k) for k in ("storage", "faces_bytes", "memory_budget")}
    return RunResult(
        run_dir=run_dir,
        summary=summary,
        folds_trained=trained,
        folds_reused=reused,
        init=init,
        skipped=skipped,
        files=[run_dir / name, *files],
        protocol=plan.protocol,
        config=config,
        warnings=warnings,
        storage=storage,
    )


def _read_round(folder: Path) -> dict[str, Any]:
    """A finished round's fold.json and history.json, and its folder (for the reports)."""
    info = json.loads((folder / "fold.json").read_text())
    history = json.loads((folder / "history.json").read_text())
    return {"info": info, "history": history, "folder": folder}
