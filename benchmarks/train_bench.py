"""Training throughput of ferdata's trainer against a plain torchvision ImageFolder + DataLoader loop.

Both sides train the same torchvision ResNet-18 (7 classes) with the same Adam parameter groups,
batch size, image size and number of steps, on the same aligned-face PNGs, in the same process:

- baseline: ``ImageFolder`` over ``<class>/<id>.png`` with RandomHorizontalFlip, ToTensor and
  Normalize, a ``DataLoader`` (``--workers`` processes; 0 and 2 are both measured by default),
  CE, NCHW tensors — the loop most FER training scripts (the MSD-E authors' among them) use;
- ferdata: ``load_faces`` once (timed separately), then batches made and trained the way
  ``ferdata.train.loop.fit`` does: uint8 faces in memory, indexed, flip + affine jitter on the
  whole batch (``Accelerator.inputs``), channels-last network, and the step under
  ``Accelerator.autocast``. Two ferdata pipelines run: ``--precision fp32`` (no autocast: the
  same arithmetic as the baseline) and ``auto`` (bf16 autocast where the CPU has native bf16
  instructions, which is what ``train-baseline`` does by default; fp32 elsewhere).

The faces are crops of scikit-image's astronaut photo at random offsets and scales, resized to
the aligned size, so that the PNGs compress like real faces. Images/s count training images
(batch fetch + forward + backward + Adam step); the pipelines take turns step by step, so the
load of a shared machine falls on all of them alike, and the median step is reported.

Run: python benchmarks/train_bench.py [--images 256] [--size 112] [--batch 32] [--steps 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ferdata.schema import BASIC_LABELS, Manifest, new_frame
from ferdata.train.data import load_faces
from ferdata.train.loop import Accelerator, DeviceFaces, TrainConfig, draw_augment, make_optimizer
from ferdata.train.models import build_model
from ferdata.workspace import Workspace


def make_faces(root: Path, n: int, size: int) -> Workspace:
    """n PNG faces written twice: as an ImageFolder tree and as a workspace manifest's aligned faces."""
    from skimage.data import astronaut

    photo = astronaut()
    rng = np.random.default_rng(0)
    ws = Workspace.resolve(root / "ws")
    rows = []
    for i in range(n):
        label = BASIC_LABELS[i % 7]
        side = int(rng.integers(160, 300))
        x, y = int(rng.integers(0, 512 - side)), int(rng.integers(0, 512 - side))
        face = Image.fromarray(photo[y : y + side, x : x + side]).resize((size, size), Image.Resampling.BILINEAR)
        relative = f"aligned/bench/{size}px/{i:05d}.png"
        for path in (ws.absolute(relative), root / "imagefolder" / label / f"{i:05d}.png"):
            path.parent.mkdir(parents=True, exist_ok=True)
            face.save(path)
        rows.append({"image_id": f"{i:05d}", "dataset": "imagefolder", "source": relative, "sha256": f"{i:064x}",
                         "label_original": label, "label": label, "masked": False, "fold": i % 2, "original_path": relative,
                         "width": size, "height": size, "face_status": "aligned", "aligned_path": relative})
    ws.save(Manifest("imagefolder", new_frame(rows)))
    return ws


def baseline_batches(folder: Path, size: int, batch: int, workers: int):
    """Endless (x, y) batches of the plain loop."""
    from torchvision import datasets, transforms

    transform = transforms.Compose([
        transforms.Resize((size, size)),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])
    loader = torch.utils.data.DataLoader(datasets.ImageFolder(str(folder), transform), batch_size=batch, shuffle=True,
                                         drop_last=True, num_workers=workers, persistent_workers=workers > 0)
    while True:
        yield from loader


def ferdata_batches(data, batch: int, acc: Accelerator):
    """Endless (x, y) batches the way ``fit`` makes them: gather the uint8 faces, augment the batch."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.tensor(data.label)
    faces = DeviceFaces(data.images, acc)
    while True:
        order = torch.randperm(len(data), generator=generator).numpy()
        for first in range(0, len(order) - batch + 1, batch):
            chosen = order[first : first + batch]
            theta = draw_augment(len(chosen), generator, acc.device)
            yield acc.inputs(faces.take(chosen), theta), labels[torch.from_numpy(chosen)]


def baseline_stepper(model):
    """The plain loop's training step: forward, CE, backward, Adam with the protocol's two groups."""
    optimizer, _ = make_optimizer(model, TrainConfig())
    model.train()

    def step(x, y) -> None:
        logits, _ = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def ferdata_stepper(model, acc: Accelerator):
    """ferdata's training step as ``fit`` runs it for method ce: its optimizer, autocast and backward."""
    optimizer, _ = make_optimizer(model, TrainConfig())
    model.train()

    def step(x, y) -> None:
        with acc.autocast():
            logits, _ = model(x)
            loss = torch.nn.functional.cross_entropy(logits.float(), y)
        acc.backward(loss, optimizer)

    return step


def measure(ws: Workspace, folder: Path, size: int, batch: int, steps: int, workers: list[int]) -> dict[str, list[float]]:
    """Seconds per step (batch fetch + training step) of each pipeline, steps interleaved A, B, C, A, B, C...

    Interleaving makes the machine's other load (these are shared cores) hit every pipeline alike.
    """
    start = time.perf_counter()
    data = load_faces(ws, image_size=size)
    print(f"ferdata: {len(data)} faces decoded into memory in {time.perf_counter() - start:.2f} s (once per run)")
    pipelines = {}
    for w in workers:
        torch.manual_seed(0)
        pipelines[f"ImageFolder + DataLoader(num_workers={w})"] = (
            baseline_batches(folder, size, batch, w), baseline_stepper(build_model(7)))
    for precision in ("fp32", "auto"):
        acc = Accelerator("cpu", precision)
        torch.manual_seed(0)
        pipelines[f"ferdata --precision {precision} ({acc.precision})"] = (
            ferdata_batches(data, batch, acc), ferdata_stepper(acc.prepare(build_model(7)), acc))
    times: dict[str, list[float]] = {name: [] for name in pipelines}
    for i in range(steps + 3):
        for name, (batches, step) in pipelines.items():
            t = time.perf_counter()
            step(*next(batches))
            if i >= 3:  # warm-up steps are not counted
                times[name].append(time.perf_counter() - t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per pipeline")
    parser.add_argument("--workers", type=int, nargs="*", default=[0, 2])
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.images} faces of {args.size} px, "
          f"batch {args.batch}, {args.steps} timed steps per pipeline (interleaved)")
    with tempfile.TemporaryDirectory() as tmp:
        ws = make_faces(Path(tmp), args.images, args.size)
        times = measure(ws, Path(tmp) / "imagefolder", args.size, args.batch, args.steps, args.workers)
    rates = {name: args.batch / float(np.median(t)) for name, t in times.items()}
    ours = {name: rate for name, rate in rates.items() if name.startswith("ferdata")}
    for name, rate in rates.items():
        line = f"{name}: {rate:.1f} img/s (median step)"
        if name not in ours:
            line += " -> ferdata is " + ", ".join(f"{r / rate:.2f}x ({n.split('(')[-1][:-1]})" for n, r in ours.items())
        print(line)


if __name__ == "__main__":
    main()
