"""How fast the review page's API answers on a large manifest, against reading that manifest.

Builds a workspace whose manifest has ``--rows`` rows (100,000 by default: labels, masks, splits,
folds, face statuses, tags of several origins, scores), then times through the HTTP API (Starlette's
test client, so routing, the token check and JSON encoding are included):

- the baseline: ``Workspace.load`` of the manifest (what any command pays to start);
- the first page after the server started (the manifest read plus everything derived from it);
- a page under a filter and an order never asked before (the vectorised selection);
- the next pages of that selection (cached: a slice and the items' JSON);
- a deep page (offset near the end), and a page after a vote when filtering on votes;
- a tag change, which rewrites the manifest under the workspace lock (for scale: not a page).

Each is the median of ``--repeat`` runs, printed in seconds and as a ratio to the manifest read.

    python benchmarks/review_bench.py [--rows 100000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ferdata.schema import LABELS, Manifest, new_frame
from ferdata.workspace import Workspace


def build(root: Path, rows: int, seed: int = 0) -> Workspace:
    """A workspace with a ``rows``-row msd-e manifest and a label-issues table (no image files)."""
    rng = np.random.default_rng(seed)
    basic = np.array(LABELS[:7], dtype=object)
    label = basic[rng.integers(0, 7, rows)]
    masked = rng.random(rows) < 0.5
    face = np.where(rng.random(rows) < 0.9, "aligned", "no_face")
    tags, origins = [], []
    for i in range(rows):
        t, o = (["mask"], ["source"]) if masked[i] else ([], [])
        if i % 37 == 0:
            t, o = [*t, "label_issue"], [*o, "user"]
        if i % 53 == 0 and not masked[i]:
            t, o = ["mask", *t], ["auto", *o]
        tags.append(t)
        origins.append(o)
    ids = [f"MSD-{'ME' if m else 'E'}/{i:07d}" for i, m in enumerate(masked)]
    frame = new_frame([
        dict(
            image_id=ids[i], dataset="msd-e", source=f"{ids[i]}.jpg", sha256=f"{i:064x}",
            subject_id=f"{i // 14:05d}", label_original=label[i], label=label[i], masked=bool(masked[i]),
            occlusion=tags[i], tag_origin=origins[i], masked_origin="source", fold=int(i // 14 % 10),
            original_path=f"originals/msd-e/{ids[i]}.jpg", width=256, height=256, face_status=face[i],
            det_score=float(rng.random()) if face[i] == "aligned" else None,
            aligned_path=f"aligned/msd-e/{i:07d}.png" if face[i] == "aligned" else None,
        )
        for i in range(rows)
    ])
    ws = Workspace.resolve(root / "ws")
    ws.save(Manifest("msd-e", frame, {}))
    issues = frame.loc[frame["occlusion"].map(lambda t: "label_issue" in t), ["image_id"]]
    issues["label_quality"] = rng.random(len(issues))
    ws.tables_dir("msd-e").mkdir(parents=True, exist_ok=True)
    issues.to_csv(ws.tables_dir("msd-e") / "label_issues.csv", index=False)
    return ws


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(ws: Workspace, repeat: int, *, tag_change: bool = True) -> dict[str, float]:
    from starlette.testclient import TestClient

    from ferdata.review import ReviewSession, create_app

    token = "bench"
    headers = {"X-Ferdata-Token": token}
    results: dict[str, list[float]] = {k: [] for k in ("read", "first", "new", "next", "deep", "voted", "tag")}
    for r in range(repeat):
        # the manifest read into a frame (ws.load alone reads and checks the Arrow table; .frame makes the frame)
        results["read"].append(timed(lambda: ws.load("msd-e").frame))
        holder = {}
        start = time.perf_counter()
        session = ReviewSession(ws, dataset="msd-e", annotator="bench")
        client = TestClient(create_app(session, token), base_url="http://127.0.0.1")
        page = client.get("/api/images", headers=headers).json()
        results["first"].append(time.perf_counter() - start)
        assert len(page["items"]) == 120
        # a filter and an order this session has not seen (each round a different label)
        query = {"label": LABELS[r % 7], "masked": "false", "tag": "label_issue", "order": "label_quality"}
        results["new"].append(timed(lambda: holder.update(page=client.get("/api/images", params=query, headers=headers).json())))
        total = holder["page"]["total"]
        assert total > 0 and all(i["label"] == LABELS[r % 7] for i in holder["page"]["items"])
        big = {"face_status": "aligned", "order": "det_score", "desc": "1"}
        client.get("/api/images", params=big, headers=headers)
        results["next"].append(timed(lambda: client.get("/api/images", params={**big, "offset": 120}, headers=headers)))
        deep = client.get("/api/images", params={**big, "offset": 0, "limit": 1}, headers=headers).json()["total"] - 120
        results["deep"].append(timed(lambda: client.get("/api/images", params={**big, "offset": deep}, headers=headers)))
        client.post("/api/vote", json={"id": page["items"][r]["id"], "vote": "fear"}, headers=headers)
        results["voted"].append(timed(lambda: client.get("/api/images", params={"vote": "not_voted"}, headers=headers)))
        if tag_change:
            change = {"id": page["items"][r]["id"], "tag": "hand", "on": True}
            results["tag"].append(timed(lambda: client.post("/api/tag", json=change, headers=headers).raise_for_status()))
    return {k: statistics.median(v) for k, v in results.items() if v}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        ws = build(Path(tmp), args.rows)
        print(f"{args.rows:,} rows built and written in {time.perf_counter() - start:.1f}s")
        m = measure(ws, args.repeat)
    read = m["read"]
    print(f"manifest read (baseline): {read:.3f}s (median of {args.repeat})")
    labels = {
        "first": "first page after start (manifest read + derived columns)",
        "new": "page under a new filter and order",
        "next": "next page of a selection",
        "deep": "deep page (offset near the end)",
        "voted": "page filtered on votes, after a vote",
        "tag": "a tag change (the manifest rewritten under the lock)",
    }
    for key, text in labels.items():
        print(f"{text}: {m[key] * 1000:.1f} ms = {m[key] / read:.3f} × the manifest read")


if __name__ == "__main__":
    main()
