"""The archive password stays out of what ``ferdata publish`` writes: the dataset card, every
Parquet shard (data and metadata), and the command's output, even when the variable that held the
password for ingest is still set in the environment publish runs in.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from builders import msd_e_tree

from ferdata.workspace import Workspace

from .helpers import clean_env, run_ferdata
from .test_secrets import ENCODINGS, PASSWORD, aes_delivery, files_holding_the_password


def test_published_card_and_shards_never_hold_the_password(tmp_path: Path) -> None:
    delivery = aes_delivery(msd_e_tree(tmp_path / "tree", subjects=4), tmp_path / "msd-e-delivery.zip")
    ws, out = tmp_path / "ws", tmp_path / "msd-e-hf"
    env = clean_env(MSDE_PW=PASSWORD)
    ingested = run_ferdata("ingest", str(delivery), "--dataset", "msd-e", "--no-align", "--password-env", "MSDE_PW",
                           "-w", str(ws), env=env)
    assert ingested.returncode == 0, ingested.stderr
    for step in (["pairs"], ["folds", "--k", "2"]):
        done = run_ferdata(*step, "-w", str(ws), env=env)
        assert done.returncode == 0, done.stderr

    published = run_ferdata("publish", "-w", str(ws), "--images", "original", "--out", str(out), env=env)

    assert published.returncode == 0, published.stderr
    shards = sorted(out.glob("data/*/*.parquet"))
    configs = {p.parent.name for p in shards}
    assert configs == {"mix", "nm", "m", "pe"}
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in shards if p.parent.name == "mix")
    assert rows == len(Workspace(ws).load("msd-e").frame)  # every decrypted image went out
    card = (out / "README.md").read_text()
    assert "msd-e-delivery.zip" in card  # the card does tell where the data came from ...
    assert files_holding_the_password(out) == []  # ... and nothing holds the password: card, shards
    for shard in shards:  # not in the schema's metadata either (checked decoded, not only as bytes)
        metadata = pq.read_schema(shard).metadata or {}
        assert not any(secret in value for value in metadata.values() for secret in ENCODINGS)
    assert not any(secret.decode("latin-1") in published.stdout + published.stderr for secret in ENCODINGS)
