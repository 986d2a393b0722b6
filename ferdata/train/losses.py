"""The paired objectives of the paper's section 3.3 (equations 1-4).

Both compare features of :class:`~ferdata.train.models.ExpressionNet` with a mean squared error
over the batch and the feature positions (equation 1). Which features is the run's ``feature``
(see :data:`ferdata.train.config.FEATURES`): by default the last stage's map, L2-normalised over
channels at each position, as in the authors' code. On that scale every position is a unit
vector, so the MSE is at most 4/512 and KD's λ·MSE (λ = 100) at most 0.78, the size of a
cross-entropy; on raw pooled features it can be tens of times larger (docs/protocol.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

CL_A, CL_B = 0.2, 1.0  # paper, eq. 3
KD_LAMBDA, KD_P = 100.0, 0.5  # paper, eq. 4 and the student's input rule


@dataclass(frozen=True)
class LossParts:
    total: torch.Tensor
    ce: torch.Tensor
    mse: torch.Tensor


def contrastive_loss(
    logits_nm: torch.Tensor,
    logits_m: torch.Tensor,
    features_nm: torch.Tensor,
    features_m: torch.Tensor,
    target: torch.Tensor,
    a: float = CL_A,
    b: float = CL_B,
) -> LossParts:
    """CL (eq. 3): ``a * MSE(f_nm, f_m) + b * (CE_nm + CE_m)``; one network saw both images of each pair."""
    mse = F.mse_loss(features_nm.float(), features_m.float())
    ce = F.cross_entropy(logits_nm.float(), target) + F.cross_entropy(logits_m.float(), target)
    return LossParts(total=a * mse + b * ce, ce=ce, mse=mse)


def distillation_loss(
    logits_student: torch.Tensor,
    features_student: torch.Tensor,
    features_teacher: torch.Tensor,
    target: torch.Tensor,
    lam: float = KD_LAMBDA,
) -> LossParts:
    """KD (eq. 4): ``CE(student) + lam * MSE(f_teacher, f_student)``; the teacher's features carry no gradient."""
    mse = F.mse_loss(features_student.float(), features_teacher.detach().float())
    ce = F.cross_entropy(logits_student.float(), target)
    return LossParts(total=ce + lam * mse, ce=ce, mse=mse)


def student_inputs(nonmasked: torch.Tensor, masked: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """The student's batch: each pair's masked image, or with probability ``p`` its non-masked one."""
    take_nm = torch.rand(nonmasked.shape[0], generator=generator) < p
    return torch.where(take_nm.view(-1, 1, 1, 1).to(nonmasked.device), nonmasked, masked)
