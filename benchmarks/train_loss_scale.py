"""How much the feature distance of CL and KD weighs against the cross-entropy, per ``--feature``.

At initialisation (torchvision's random ResNet-18), on face crops of scikit-image's astronaut photo
(``--pairs`` crops at random offsets and scales; the "masked" twin of each is the same crop with
its lower half painted grey, where a mask sits), fp32, evaluation of one batch without gradients:

- CL: one network sees both images of each pair; printed: the MSE between the two features,
  a·MSE with a = 0.2 (the paper) and a = 1 (the authors' code), and CE of the non-masked images;
- KD: a frozen teacher (another random ResNet-18, standing in for a network trained elsewhere)
  sees the non-masked image, the student the masked one; printed: λ·MSE with λ = 100 and CE.

The ratio distance / CE says which loss drives the first steps. Only the scale matters here, not
the values of a trained network (their features grow as training sharpens them, which makes raw
pooled features weigh even more).

Run: python benchmarks/train_loss_scale.py [--pairs 16] [--sizes 112,224]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ferdata.train.config import FEATURES
from ferdata.train.loop import Accelerator
from ferdata.train.losses import CL_A, KD_LAMBDA
from ferdata.train.models import build_model, freeze


def face_pairs(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from skimage.data import astronaut

    photo = astronaut()
    rng = np.random.default_rng(seed)
    faces = []
    for _ in range(n):
        side = int(rng.integers(140, 220))
        x, y = int(rng.integers(120, 200)), int(rng.integers(0, 60))
        faces.append(np.asarray(Image.fromarray(photo[y : y + side, x : x + side]).resize((size, size))))
    nonmasked = np.stack(faces)
    masked = nonmasked.copy()
    masked[:, size // 2 :] = 120
    return nonmasked, masked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--sizes", default="112,224")
    args = parser.parse_args()
    acc = Accelerator("cpu", "fp32")
    labels = torch.arange(args.pairs) % 7
    print(f"{'size':>4} {'feature':8} {'CL MSE':>9} {'0.2·MSE':>8} {'1·MSE':>8} {'CE':>6} | {'KD λ·MSE':>9} {'CE':>6} {'λ·MSE/CE':>9}")
    for size in (int(s) for s in args.sizes.split(",")):
        nonmasked, masked = face_pairs(args.pairs, size)
        x_nm, x_m = (acc.inputs(torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()) for a in (nonmasked, masked))
        torch.manual_seed(0)
        student = build_model(7).train()
        torch.manual_seed(1)
        teacher = freeze(build_model(7))
        with torch.no_grad():
            for feature in FEATURES:
                logits_nm, f_nm = student(x_nm, feature)
                _, f_m = student(x_m, feature)
                cl_mse = float(F.mse_loss(f_nm, f_m))
                ce = float(F.cross_entropy(logits_nm, labels))
                _, f_teacher = teacher(x_nm, feature)
                logits_student, f_student = student(x_m, feature)
                kd = KD_LAMBDA * float(F.mse_loss(f_student, f_teacher))
                kd_ce = float(F.cross_entropy(logits_student, labels))
                print(f"{size:>4} {feature:8} {cl_mse:9.5f} {CL_A * cl_mse:8.4f} {cl_mse:8.4f} {ce:6.3f} | "
                      f"{kd:9.3f} {kd_ce:6.3f} {kd / kd_ce:9.2f}")


if __name__ == "__main__":
    main()
