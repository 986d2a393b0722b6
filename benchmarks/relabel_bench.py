"""How fast `ferdata relabel` applies 1,000,000 votes, against a per-row Python loop.

Both sides read the same long-form CSV (image, annotator, vote), apply the MSD-E rule with the
paper's thresholds (N = annotators who voted, 7 here) and build an audit row per image (counts per
class, winner, action, reason); the script checks that they reach the same labels, then prints
the times and their ratio. A final line times the whole workspace command (manifest read and write,
audit tables) for scale.

    python benchmarks/relabel_bench.py [--votes 1000000] [--annotators 7] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from ferdata.relabel import apply_decisions, decide, relabel
from ferdata.schema import LABELS, Manifest, new_frame, write_manifest
from ferdata.votes import CATEGORIES, read_votes, tally
from ferdata.workspace import Workspace

BASIC = LABELS[:7]
CATEGORY_NAMES = [c if c != "unknown" else "flag" for c in CATEGORIES]


def make_data(n_votes: int, annotators: int, seed: int, folder: Path) -> tuple[pd.DataFrame, Path]:
    rng = np.random.default_rng(seed)
    n_images = n_votes // annotators
    originals = rng.choice(BASIC, n_images)
    frame = new_frame(
        [
            dict(
                image_id=f"img{i:07d}",
                dataset="msd-e",
                source=f"MSD-E/img{i:07d}.jpg",
                sha256="0" * 64,
                label_original=label,
                label=label,
                masked=bool(i % 2),
                original_path=f"originals/msd-e/img{i:07d}.jpg",
                width=10,
                height=10,
            )
            for i, label in enumerate(originals)
        ]
    )
    # ~15 % of images are flagged by somebody (the paper: 288 of 2,007)
    flagged_image = rng.random(n_images) < 0.15
    choices = np.array(["", *BASIC, "flag"], dtype=object)
    words = choices[rng.integers(1, len(choices), size=(n_images, annotators))]
    words[rng.random((n_images, annotators)) < 0.5] = ""
    words[~flagged_image] = ""
    votes = pd.DataFrame(
        {
            "image": np.repeat(frame["image_id"].to_numpy(dtype=object), annotators),
            "annotator": np.tile([f"volunteer{k}" for k in range(annotators)], n_images),
            "vote": words.ravel(),
        }
    )
    path = folder / "votes.csv"
    votes.to_csv(path, index=False)
    return frame, path


def vectorised(frame: pd.DataFrame, path: Path) -> list[str | None]:
    audit = decide(frame, tally(read_votes(path), frame).endorsements)
    out = apply_decisions(frame, audit)
    return [None if pd.isna(v) else v for v in out["label"]]


def per_row_loop(frame: pd.DataFrame, path: Path) -> list[str | None]:
    """The same rule and the same audit rows, one vote and one image at a time in plain Python."""
    original = dict(zip(frame["image_id"], frame["label_original"]))
    votes: dict[str, list[str]] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            vote = row["vote"].strip().lower()
            votes.setdefault(row["image"].strip(), []).append(original[row["image"]] if vote in ("", "ok") else vote)
    audit = []
    for image_id, label in original.items():
        cast = votes.get(image_id, [])
        n = len(cast)
        counts = Counter(cast)
        endorsed = Counter(v for v in cast if v in BASIC)
        ranked = endorsed.most_common()
        best, top = ranked[0] if ranked else (None, 0)
        others = sum(endorsed.values()) - top
        flagged = n - counts[label]
        if not cast:
            action, new, reason = "original", label, "no votes for this image: label kept"
        elif flagged == 0:
            action, new, reason = "original", label, f"not flagged by any of the {n} annotators: label kept"
        elif top == 0 or (len(ranked) > 1 and ranked[1][1] == top):
            action, new, reason = "removed", None, f"flagged by {flagged} of {n}; no single winner: removed"
        elif top >= 0.5 * n and others <= 0.25 * n:
            action = "original" if best == label else "relabelled"
            new, reason = best, f"flagged by {flagged} of {n}; {best} has {top}/{n}, others {others}/{n}"
        else:
            action, new, reason = "removed", None, f"flagged by {flagged} of {n}; {best} has {top}/{n}, others {others}/{n}: removed"
        audit.append({"image_id": image_id, **{c: counts[c] for c in CATEGORY_NAMES}, "winner": best, "action": action, "label": new, "reason": reason})
    return [None if pd.isna(v) else v for v in pd.DataFrame(audit)["label"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--annotators", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        frame, path = make_data(args.votes, args.annotators, args.seed, folder)
        n_votes = len(frame) * args.annotators
        print(f"{n_votes:,} votes on {len(frame):,} images by {args.annotators} annotators")

        start = time.perf_counter()
        fast = vectorised(frame, path)
        t_fast = time.perf_counter() - start
        start = time.perf_counter()
        slow = per_row_loop(frame, path)
        t_slow = time.perf_counter() - start
        assert fast == slow, "the vectorised rule and the loop disagree"
        removed = sum(v is None for v in fast)
        print(f"same labels from both ({removed:,} removed)")
        print(f"vectorised (read, match, count, decide, audit, apply): {t_fast:.2f} s")
        print(f"per-row Python loop (the same steps):                   {t_slow:.2f} s")
        print(f"ratio loop / vectorised: {t_slow / t_fast:.1f}x")

        ws = Workspace.resolve(folder / "ws")
        write_manifest(ws.manifest_path("msd-e"), Manifest("msd-e", frame, {}))
        start = time.perf_counter()
        relabel(ws, path)
        print(f"whole `ferdata relabel` on the workspace (incl. manifest + audit writes): {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
