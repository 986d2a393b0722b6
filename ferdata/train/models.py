"""ResNet-18 for expressions: torchvision's network, a feature output, ``--init`` and checkpoints.

The network is torchvision's ``resnet18`` built with ``weights=None`` (nothing is ever downloaded);
:class:`ExpressionNet` returns the logits and one kind of feature (:data:`FEATURES`): the 512-d
pooled penultimate features, which the t-SNE plot shows (paper, section 3.4), or the kind the CL
and KD losses compare (``feature`` of :class:`~ferdata.train.config.TrainConfig`).

``--init CKPT`` loads face-recognition weights such as an MS-Celeb-1M ResNet-18. Such files come
in many wrappings (``{"state_dict": ...}``, ``module.`` from DataParallel, ``backbone.``...), so
:func:`load_init` unwraps them, maps each key onto the network by name and shape, and returns an
:class:`InitReport` saying what was loaded and what was not. The classifier of a face-recognition
model has thousands of identities as outputs, so it never fits: the head starts fresh.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UsageError
from .config import FEATURES

FEATURE_SIZE = 512
# wrappers that training code puts around a ResNet's own key names
_PREFIXES = (
    "module.",
    "model.",
    "backbone.",
    "net.",
    "encoder.",
    "base.",
    "resnet.",
    "features.",
    "feature_extractor.",
)
_CONTAINERS = ("state_dict", "model_state_dict", "model", "net", "backbone", "params")


class ExpressionNet(nn.Module):
    """torchvision ResNet-18 whose forward returns ``(logits, features)``."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        from torchvision.models import resnet18

        self.net = resnet18(weights=None, num_classes=num_classes)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's output, B x 512 x h x w (h = w = input side / 32)."""
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))

    def forward(self, x: torch.Tensor, feature: str = "pool") -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, features)``; the classifier always sees the pooled features, ``feature`` only
        chooses what is returned beside the logits (one of :data:`FEATURES`)."""
        fmap = self.feature_map(x)
        pooled = torch.flatten(self.net.avgpool(fmap), 1)
        logits = self.net.fc(pooled)
        if feature == "pool":
            return logits, pooled
        import torch.nn.functional as F

        if feature == "pool-l2":
            return logits, F.normalize(pooled.float(), dim=1)
        if feature == "map-l2":
            return logits, F.normalize(fmap.float(), dim=1)
        raise ValueError(f"unknown feature {feature!r}: choose one of {', '.join(FEATURES)}")

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone, head): the two learning rates of the protocol."""
        head = list(self.net.fc.parameters())
        ids = {id(p) for p in head}
        return [p for p in self.parameters() if id(p) not in ids], head


def build_model(num_classes: int) -> ExpressionNet:
    return ExpressionNet(num_classes)


def freeze(model: nn.Module) -> nn.Module:
    """A teacher: evaluation mode (batch-norm statistics fixed) and no gradients."""
    model.eval()
    model.requires_grad_(False)
    return model


# ----------------------------------------------------------------------------- --init


@dataclass
class InitReport:
    """What :func:`load_init` did with a checkpoint's tensors."""

    path: str
    loaded: list[str] = field(default_factory=list)  # network keys filled from the file
    missing: list[str] = field(default_factory=list)  # network keys the file did not provide
    mismatched: list[str] = field(default_factory=list)  # same name, other shape (e.g. the classifier)
    unused: list[str] = field(default_factory=list)  # file keys that match nothing

    def summary(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "loaded": len(self.loaded),
            "missing": self.missing,
            "mismatched": self.mismatched,
            "unused": len(self.unused),
        }


def _read(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UsageError(f"checkpoint {path} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a file that is not a plain state dict
        raise UsageError(
            f"cannot read {path} as a PyTorch state dict ({type(exc).__name__}): save it with "
            "torch.save(model.state_dict(), path)"
        ) from None


def state_dict_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint, unwrapped from the usual containers."""
    for _ in range(3):
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _CONTAINERS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict):
        raise UsageError(f"{path} holds no state dict (found {type(obj).__name__})")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise UsageError(f"{path} holds no tensors")
    return tensors


def _canonical(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def map_keys(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], InitReport]:
    """Match checkpoint keys to the network's ``net.*`` keys by name (wrappers stripped) and shape."""
    report = InitReport(path="")
    by_name = {_canonical(k): k for k in target}
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in source.items():
        name = by_name.get(_canonical(key))
        if name is None:
            report.unused.append(key)
        elif tuple(tensor.shape) != tuple(target[name].shape):
            report.mismatched.append(name)
        else:
            mapped[name] = tensor
    report.loaded = sorted(mapped)
    report.missing = sorted(k for k in target if k not in mapped and k not in report.mismatched)
    report.mismatched.sort()
    return mapped, report


def load_init(model: ExpressionNet, path: Path | str) -> InitReport:
    """Fill ``model`` with the matching tensors of a checkpoint; the rest keep their fresh values."""
    path = Path(path)
    target = model.state_dict()
    mapped, report = map_keys(state_dict_of(_read(path), path), target)
    report.path = str(path)
    backbone = [k for k in report.loaded if not k.startswith("net.fc.")]
    if not backbone:
        raise UsageError(
            f"no tensor of {path} matches a ResNet-18 (e.g. conv1.weight, layer1.0.conv1.weight): is it one?"
        )
    model.load_state_dict(mapped, strict=False)
    return report


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(model: ExpressionNet, path: Path, classes: tuple[str, ...], **info: Any) -> None:
    """Atomically write ``{"model": state dict, "classes": [...], **info}``."""
    from ..fsutil import atomic_path

    payload = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "classes": list(classes), **info}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path | str, classes: tuple[str, ...]) -> ExpressionNet:
    """A network from a ferdata checkpoint (or any full ResNet-18 state dict) with these classes."""
    path = Path(path)
    raw = _read(path)
    if isinstance(raw, dict) and "classes" in raw and list(raw["classes"]) != list(classes):
        raise UsageError(
            f"{path} was trained on the classes {', '.join(raw['classes'])}, this data has {', '.join(classes)}"
        )
    model = build_model(len(classes))
    mapped, report = map_keys(state_dict_of(raw, path), model.state_dict())
    if report.missing or report.mismatched:
        raise UsageError(
            f"{path} is not a whole {len(classes)}-class ResNet-18 "
            f"({len(report.missing)} tensors missing, {len(report.mismatched)} of another shape)"
        )
    model.load_state_dict(mapped)
    return model
