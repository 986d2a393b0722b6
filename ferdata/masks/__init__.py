"""Masks on face crops, two jobs in two modules:

- :mod:`ferdata.masks.synth`: ``ferdata mask-synth``, a synthetic masked twin per non-masked
  face, added as a paired manifest row (the pixels are drawn by :mod:`ferdata.vision.masks`);
- :mod:`ferdata.masks.tagging`: ``ferdata tag auto --mask``, features of a crop, the logistic
  regression behind ``mask_score``, and the workspace step that tags masked faces.

One draws masks, the other recognises them; neither imports the other (the tagger is only
checked on the twins the synthesiser draws, ``benchmarks/mask_tagging.py``). Their entry points
are re-exported here: ``from ferdata.masks import synthesize_masks, auto_tag_masks``.
"""

from __future__ import annotations

from .synth import SYNTH_ID_SUFFIX, MaskSynthResult, synthesize_masks
from .tagging import (
    DEFAULT_MODEL,
    FEATURES,
    AutoMaskResult,
    MaskModel,
    auto_tag_masks,
    fit_mask_model,
    mask_features,
    precision_recall,
    workspace_features,
)

__all__ = [
    "DEFAULT_MODEL",
    "FEATURES",
    "SYNTH_ID_SUFFIX",
    "AutoMaskResult",
    "MaskModel",
    "MaskSynthResult",
    "auto_tag_masks",
    "fit_mask_model",
    "mask_features",
    "precision_recall",
    "synthesize_masks",
    "workspace_features",
]
