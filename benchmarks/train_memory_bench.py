"""Data beyond memory: the trainer's memory-mapped face cache against its in-memory path.

A workspace of N synthetic video frames (default 200,000; crops of scikit-image's astronaut photo
at random offsets and scales, resized to ``--size`` and saved as PNG, in clips of 10 frames) is
loaded by ``ferdata.train.data.load_faces`` twice, each time in a fresh process:

- ``memory``: a budget above the decoded size, so every face is held in one uint8 array;
- ``disk``: ``memory_budget=0``, so the faces are written to ``cache/faces-<S>px-*.u8`` and
  mapped read-only; a training step reads its batch from the map (a batch ahead, in a thread).

Each process reports the seconds to load (decode) the faces, its peak *anonymous* memory (RssAnon
of /proc/self/status, sampled every 20 ms: what the process holds and the kernel cannot take
back), its peak resident size (VmHWM: anonymous plus file pages it touched, which under pressure
the kernel drops and reads again) and the images/s of gathering 1,000 random batches alone. A
third process then trains two identical ResNet-18s, one reading its batches from memory and one
from the disk cache, taking turns step by step (``--steps`` steps of ``--batch`` random frames,
gathered and trained as ``train-baseline`` does), and reports the median step of each. The ratios
disk / memory are printed last.

The frame size is chosen so that the in-memory side stays feasible on a shared 24 GiB machine:
200,000 x 3 x 64 x 64 bytes = 2.3 GiB (at 112 pixels it would be 7.0 GiB).

Run: python benchmarks/train_memory_bench.py [--frames 200000] [--size 64] [--steps 30] [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def make_frames(root: Path, n: int, size: int) -> Path:
    """n PNG frames and the workspace manifest that lists them (aligned crops, train split)."""
    from PIL import Image
    from skimage.data import astronaut

    from ferdata.schema import BASIC_LABELS, Manifest, new_frame
    from ferdata.workspace import Workspace

    ws = Workspace.resolve(root / "ws")
    photo = astronaut()
    folder = ws.absolute("aligned/ferv39k/frames")
    folder.mkdir(parents=True, exist_ok=True)

    def write(i: int) -> None:
        rng = np.random.default_rng(i)
        side = int(rng.integers(160, 300))
        x, y = int(rng.integers(0, 512 - side)), int(rng.integers(0, 512 - side))
        face = Image.fromarray(photo[y : y + side, x : x + side]).resize((size, size), Image.Resampling.BILINEAR)
        face.save(folder / f"{i:06d}.png", compress_level=1)

    with ThreadPoolExecutor(max_workers=4) as pool:
        for first in range(0, n, 10_000):
            list(pool.map(write, range(first, min(first + 10_000, n))))
            print(f"  wrote {min(first + 10_000, n):,} frames", file=sys.stderr, flush=True)
    rows = []
    for i in range(n):
        relative = f"aligned/ferv39k/frames/{i:06d}.png"
        label = BASIC_LABELS[(i // 10) % 7]
        rows.append({"image_id": f"{i:06d}", "dataset": "ferv39k", "source": relative, "sha256": f"{i:064x}",
                     "split": "train" if (i // 10) % 5 else "test", "clip_id": f"clip{i // 10:05d}",
                     "label_original": label, "label": label, "original_path": relative, "width": size, "height": size,
                     "face_status": "aligned", "aligned_path": relative})
    ws.save(Manifest("ferv39k", new_frame(rows)))
    return ws.root


class PeakMemory:
    """Samples RssAnon, RssFile and VmHWM of this process every 20 ms."""

    def __init__(self) -> None:
        self.peak = {"RssAnon": 0, "RssFile": 0, "VmHWM": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> None:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in self.peak:
                self.peak[key] = max(self.peak[key], int(value.split()[0]) * 1024)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.sample()

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        self.sample()
        return self.peak


def child(mode: str, root: Path, size: int, batch: int) -> dict:
    """Load the faces one way in this process and gather random batches (run with --child)."""
    from ferdata.train.data import load_faces
    from ferdata.train.loop import Accelerator, DeviceFaces

    memory = PeakMemory()
    start = time.perf_counter()
    budget = 2**50 if mode == "memory" else 0
    data = load_faces(root / "ws", image_size=size, memory_budget=budget, cache_dir=root / "cache")
    load_s = time.perf_counter() - start
    assert data.origin["storage"] == mode, data.origin
    faces = DeviceFaces(data.images, Accelerator("cpu"))
    rng = np.random.default_rng(0)
    gathers = [rng.integers(0, len(data), batch) for _ in range(1000)]
    start = time.perf_counter()
    for images in faces.stream(gathers):
        pass
    gather_ips = len(gathers) * batch / (time.perf_counter() - start)
    peak = memory.stop()
    return {"mode": mode, "frames": len(data), "faces_gib": data.origin["faces_bytes"] / 2**30, "load_s": load_s,
            "peak_anon_gib": peak["RssAnon"] / 2**30, "peak_rss_gib": peak["VmHWM"] / 2**30,
            "peak_file_gib": peak["RssFile"] / 2**30, "gather_images_per_s": gather_ips}


def interleaved_training(root: Path, size: int, steps: int, batch: int) -> dict:
    """Training steps from memory and from the disk cache, taking turns step by step, so that the
    load of a shared machine falls on both alike (run with --child train)."""
    import torch

    from ferdata.train.data import DiskFaces
    from ferdata.train.loop import Accelerator, DeviceFaces, TrainConfig, draw_augment, make_optimizer
    from ferdata.train.models import build_model

    (path,) = (root / "cache").glob(f"faces-{size}px-*.u8")
    n = path.stat().st_size // (3 * size * size)
    shape = (n, 3, size, size)
    acc = Accelerator("cpu")
    pipelines = {"memory": DeviceFaces(torch.from_numpy(np.fromfile(path, dtype=np.uint8).reshape(shape)), acc),
                 "disk": DeviceFaces(DiskFaces(path, shape), acc)}
    labels = torch.from_numpy(np.arange(n) // 10 % 7)
    rng = np.random.default_rng(0)
    batches = [rng.choice(n, batch, replace=False) for _ in range(steps + 2)]
    times: dict[str, list[float]] = {name: [] for name in pipelines}
    state = {}
    for name in pipelines:
        torch.manual_seed(0)
        model = acc.prepare(build_model(7)).train()
        state[name] = (model, make_optimizer(model, TrainConfig(image_size=size))[0], torch.Generator().manual_seed(0),
                       pipelines[name].stream(batches))
    for i in range(len(batches)):
        order = list(state) if i % 2 == 0 else list(state)[::-1]  # neither pipeline always goes first
        for name in order:
            model, optimizer, generator, stream = state[name]
            start = time.perf_counter()
            images = next(stream)
            with acc.autocast():
                logits, _ = model(acc.inputs(images, draw_augment(batch, generator, acc.device)))
                loss = torch.nn.functional.cross_entropy(logits.float(), labels[torch.from_numpy(batches[i])])
            acc.backward(loss, optimizer)
            if i >= 2:  # warm-up
                times[name].append(time.perf_counter() - start)
    return {f"train_images_per_s_{name}": batch / float(np.median(t)) for name, t in times.items()} | {"precision": acc.precision}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--root", type=Path, default=None, help="keep the frames here (default: a temporary folder)")
    parser.add_argument("--child", choices=("memory", "disk", "train"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "train":
        print(json.dumps(interleaved_training(args.root, args.size, args.steps, args.batch)))
        return
    if args.child:
        print(json.dumps(child(args.child, args.root, args.size, args.batch)))
        return

    root = args.root or Path(tempfile.mkdtemp(prefix="ferdata-membench-"))
    try:
        if not (root / "ws" / "manifests").is_dir():
            start = time.perf_counter()
            make_frames(root, args.frames, args.size)
            print(f"{args.frames:,} frames of {args.size} px written in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        results = {}
        for mode in ("memory", "disk", "train"):
            if mode != "train":
                shutil.rmtree(root / "cache", ignore_errors=True)
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--root", str(root), "--size", str(args.size),
                                  "--steps", str(args.steps), "--batch", str(args.batch)],
                                 check=True, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps(results[mode]), file=sys.stderr)
        m, d, t = results["memory"], results["disk"], results["train"]
        m["train_images_per_s"], d["train_images_per_s"] = t["train_images_per_s_memory"], t["train_images_per_s_disk"]
        print(f"{m['frames']:,} frames at {args.size} px = {m['faces_gib']:.2f} GiB decoded; batch {args.batch}, "
              f"median of {args.steps} interleaved training steps, precision {t['precision']}")
        print(f"{'':24}{'memory':>10}{'disk':>10}{'disk/memory':>13}")
        for key, label, fmt in (("load_s", "load (decode) s", "{:10.1f}"), ("peak_anon_gib", "peak anonymous GiB", "{:10.2f}"),
                                ("peak_rss_gib", "peak resident GiB", "{:10.2f}"), ("train_images_per_s", "train images/s", "{:10.1f}"),
                                ("gather_images_per_s", "gather images/s", "{:10.0f}")):
            print(f"{label:24}" + fmt.format(m[key]) + fmt.format(d[key]) + f"{d[key] / m[key]:13.2f}")
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
