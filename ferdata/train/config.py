"""The options of a training run (:class:`TrainConfig`) and their vocabularies, checked before
any data is read or any network built.

Apart from the loop (:mod:`ferdata.train.loop`) so that the options can be built and checked
without importing it, and so that :mod:`ferdata.train.models` (which needs :data:`FEATURES`) and
the loop do not import each other. No torch here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from ..errors import UsageError
from .data import MASKED, SUBSETS, FaceData, parse_size

METHODS = ("ce", "cl", "kd")
PROTOCOLS = ("folds", "split")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
# What CL and KD compare (paper, eq. 1): ``pool`` the 512-d average-pooled features, as the
# paper's B x F reads; ``pool-l2`` the same, L2-normalised; ``map-l2`` the last stage's map
# (512 x h x w) L2-normalised over channels at each position, as the authors' code does
# (``F.normalize`` of layer 4's output in their resnet.py). Only on the normalised scales does
# KD's λ = 100 weigh like the cross-entropy (docs/protocol.md).
FEATURES = ("pool", "pool-l2", "map-l2")
SIZE_RANDOM, SIZE_INIT = 112, 224  # ferdata's aligned crops; the size face-recognition ResNets are trained at


@dataclass(frozen=True)
class TrainConfig:
    """The options of ``ferdata train-baseline``; defaults are the paper's (section 3.1, 3.3)."""

    protocol: str | None = None  # None: folds where the data has folds and no official split, else split
    subset: str | None = None  # None: pe for cl/kd; else nm where the data holds masked faces, else mix
    method: str = "ce"
    folds: int | None = None  # expected number of folds in the data; None: whatever it has
    fold: int | None = None  # run only this validation fold
    epochs: int = 25
    batch_size: int = 96  # images per step; pairs per step for cl and kd
    image_size: int | None = None  # None: 112, or 224 with init (face-recognition weights' size)
    lr_backbone: float = 1e-4
    lr_head: float = 1e-3
    milestones: tuple[int, ...] = (8, 14, 20)
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # autocast of the network: auto (see Accelerator), fp32 (none) or bf16
    init: str | None = None
    teacher: str | None = None
    feature: str = "map-l2"  # what CL and KD compare: see FEATURES
    cl_a: float = 0.2
    cl_b: float = 1.0
    kd_lambda: float = 100.0
    kd_p: float = 0.5
    augment: bool = True
    tsne: bool = True
    figure_format: str = "png"  # confusion matrices and t-SNE: png, pdf or svg (ferdata.figures)
    dpi: int = 150
    epoch_log: bool = True  # predict the evaluated images after every epoch (diagnostic)
    memory_budget: int | str | None = None  # bytes of decoded faces held in memory; None: half the available RAM

    def resolved(self) -> TrainConfig:
        """Check the options that need no data and fill the image size."""
        if self.method not in METHODS:
            raise UsageError(f"unknown method {self.method!r}: choose one of {', '.join(METHODS)}")
        if self.protocol is not None and self.protocol not in PROTOCOLS:
            raise UsageError(f"unknown protocol {self.protocol!r}: choose one of {', '.join(PROTOCOLS)}")
        if self.subset is not None and self.subset not in SUBSETS:
            raise UsageError(f"unknown subset {self.subset!r}: choose one of {', '.join(SUBSETS)}")
        if self.method in ("cl", "kd") and self.subset not in (None, "pe"):
            raise UsageError(f"method={self.method} trains on MSD-PE pairs: use subset=pe")
        if self.teacher is not None and self.method != "kd":
            raise UsageError("teacher= only applies to method=kd")
        if self.feature not in FEATURES:
            raise UsageError(f"unknown feature {self.feature!r}: choose one of {', '.join(FEATURES)}")
        if self.device not in DEVICES:
            raise UsageError(f"unknown device {self.device!r}: choose one of {', '.join(DEVICES)}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        image_size = self.image_size if self.image_size is not None else (SIZE_INIT if self.init else SIZE_RANDOM)
        if self.epochs < 1 or self.batch_size < 1 or image_size < 32:
            raise UsageError("epochs= and batch_size= must be at least 1 and image_size= at least 32")
        if sorted(self.milestones) != list(self.milestones) or any(m < 1 for m in self.milestones):
            raise UsageError(f"milestones= must be increasing epoch numbers, got {','.join(map(str, self.milestones))}")
        if not 0.0 <= self.kd_p <= 1.0:
            raise UsageError(f"kd_p={self.kd_p} is not a probability")
        if self.folds is not None and self.folds < 2:
            raise UsageError(f"folds={self.folds} must be at least 2")
        if self.protocol == "split" and (self.folds is not None or self.fold is not None):
            raise UsageError("folds= and fold= choose folds of protocol=folds; protocol=split trains once on train")
        from ..figures import check_format

        figure_format = check_format(self.figure_format, self.dpi)
        budget = parse_size(self.memory_budget)
        if budget is not None and budget < 0:
            raise UsageError(f"memory_budget={self.memory_budget!r} must not be negative")
        return replace(
            self,
            image_size=image_size,
            milestones=tuple(int(m) for m in self.milestones),
            memory_budget=budget,
            figure_format=figure_format,
        )

    def for_data(self, data: FaceData) -> TrainConfig:
        """Fill the protocol and the subset from the data (see the field comments)."""
        config = self.resolved()
        protocol = config.protocol
        if protocol is None:
            protocol = "folds" if data.folds and not data.has_official_split else "split"
        if protocol == "split" and (config.folds is not None or config.fold is not None):
            raise UsageError(
                "folds= and fold= choose folds of protocol=folds, but this data has an official "
                "split: pass protocol=folds to cross-validate instead"
            )
        subset = config.subset
        if subset is None:
            subset = "pe" if config.method in ("cl", "kd") else ("nm" if (data.masked == MASKED).any() else "mix")
        return replace(config, protocol=protocol, subset=subset)

    def fingerprint(self) -> dict[str, Any]:
        """The options that change a round's result: a re-run into the same RUN_DIR must match them."""
        keep = asdict(self)
        for name in (
            "folds",
            "fold",
            "device",
            "precision",
            "tsne",
            "figure_format",
            "dpi",
            "epoch_log",
            "memory_budget",
        ):
            keep.pop(name)
        keep["milestones"] = list(self.milestones)
        return keep
