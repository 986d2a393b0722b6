"""`ferdata publish`: Hub-style folders that `datasets.load_dataset` reads offline, row for row."""

from __future__ import annotations

import hashlib
import io
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from builders import fer2013_csv, fer_rows, msd_e_tree, write
from PIL import Image
from typer.testing import CliRunner

from ferdata.cli import app
from ferdata.errors import PublishError, UsageError
from ferdata.ingest import ingest
from ferdata.pairs import make_pairs
from ferdata.publish import (
    CARD_MARKER,
    check_push_allowed,
    class_names_for,
    layout,
    publish,
    terms_of,
)
from ferdata.publish.card import yaml_text
from ferdata.relabel import relabel
from ferdata.schema import BASIC_LABELS, LABELS, Manifest, column, new_frame
from ferdata.workspace import Workspace

ANNOTATORS = [f"a{i}" for i in range(1, 8)]
NO_FACE = "MSD-ME/003_2_dslr"  # the detector found no face: no aligned crop
REMOVED = "MSD-E/002_1_dslr"  # every annotator flags it without a class
RELABELLED = "MSD-ME/001_0_dslr"  # becomes fear: its pair leaves MSD-PE


def crop_png(image_id: str) -> bytes:
    """A 112×112 'aligned crop' whose pixels depend on the image id only (smooth, like a face)."""
    seed = int.from_bytes(hashlib.sha256(image_id.encode()).digest()[:4], "little")
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 200, 112, dtype=np.float32)
    pixels = base[None, :, None] + rng.integers(0, 50, size=(112, 112, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def msd_ws(tmp_path_factory) -> Workspace:
    """4 subjects × 7 expressions × (non-masked, masked), relabelled, paired, aligned, folded."""
    root = tmp_path_factory.mktemp("msd")
    src = msd_e_tree(root / "src", subjects=4)
    ws = Workspace.resolve(root / "ws")
    ingest(src, ws, dataset="msd-e", align=False)
    votes = ["image,annotator,vote"]
    votes += [f"{REMOVED},{a},flag" for a in ANNOTATORS]
    votes += [f"{RELABELLED},{a},{'fear' if i < 6 else 'ok'}" for i, a in enumerate(ANNOTATORS)]
    write(root / "votes.csv", ("\n".join(votes) + "\n").encode())
    relabel(ws, root / "votes.csv")
    make_pairs(ws)

    manifest = ws.load()
    frame = manifest.frame
    for i, image_id in enumerate(frame["image_id"]):
        if image_id == NO_FACE:
            frame.loc[i, "face_status"] = "no_face"
            continue
        crop = ws.aligned_dir("msd-e") / "112px" / f"{image_id.replace('/', '_')}.png"
        write(crop, crop_png(image_id))
        frame.loc[i, ["face_status", "aligned_path", "det_score", "n_faces"]] = ["aligned", ws.relative(crop), 0.5 + i / 200, 1]
    frame["fold"] = frame["subject_id"].map(lambda s: int(s) % 3).astype("Int64")
    # what `ferdata align` and `ferdata folds` record (keys as in ferdata.align / ferdata.folds)
    manifest.provenance["align"] = {"detector": "retinaface", "provider": "CPUExecutionProvider", "size": 112, "counts": {"aligned": 55, "no_face": 1}}
    manifest.provenance["folds"] = {"k": 3, "seed": 1234, "method": "stratified-group", "stratified_by": "label"}
    ws.save(manifest)
    return ws


@pytest.fixture(scope="session")
def msd_frame(msd_ws):
    return msd_ws.load().frame


@pytest.fixture(scope="session")
def msd_out(msd_ws, tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("hf") / "msd-e-hf"
    return out, publish(msd_ws, out)


@pytest.fixture
def load(tmp_path, monkeypatch):
    """``datasets.load_dataset`` offline, with its cache under tmp_path."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    datasets.disable_progress_bars()

    def load_config(folder: Path, config: str):
        return datasets.load_dataset(str(folder), config, cache_dir=str(tmp_path / "hf-cache"))

    return load_config


def card_header(folder: Path) -> dict:
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("config, masked", [("mix", None), ("nm", False), ("m", True)])
def test_image_configs_round_trip_row_by_row(msd_ws, msd_frame, msd_out, load, config, masked) -> None:
    out, result = msd_out
    expected = msd_frame[(msd_frame["label_status"] != "removed") & (msd_frame["face_status"] == "aligned")]
    if masked is not None:
        expected = expected[expected["masked"] == masked]
    expected = expected.sort_values("image_id").reset_index(drop=True)
    assert len(expected) == {"mix": 54, "nm": 27, "m": 27}[config]

    ds = load(out, config)
    assert list(ds) == ["train"]
    train = ds["train"]
    assert train.num_rows == len(expected) == result.counts[config]["train"]
    assert train.features["label"].names == list(BASIC_LABELS)
    assert train["image_id"] == expected["image_id"].tolist()
    assert [train.features["label"].int2str(i) for i in train["label"]] == expected["label"].tolist()
    assert train["fold"] == expected["fold"].tolist()
    assert train["masked"] == expected["masked"].tolist()
    assert train["pair_id"] == expected["pair_id"].tolist()
    assert train["in_pe"] == expected["in_pe"].tolist()
    assert train["label_status"] == expected["label_status"].tolist()
    assert train.features["label_original"].names == list(BASIC_LABELS)
    assert [train.features["label_original"].int2str(i) for i in train["label_original"]] == expected["label_original"].tolist()
    assert train["det_score"] == pytest.approx(expected["det_score"].tolist())
    assert "clip_id" not in train.features  # null in every row: left out
    for i in (0, len(expected) // 2, len(expected) - 1):
        decoded = np.asarray(train[i]["image"])
        on_disk = np.asarray(Image.open(msd_ws.absolute(expected.loc[i, "aligned_path"])))
        assert decoded.shape == (112, 112, 3)
        assert np.array_equal(decoded, on_disk)


def test_load_without_a_config_name_gives_mix(msd_out, load) -> None:
    out, result = msd_out
    assert load(out, None)["train"].num_rows == result.counts["mix"]["train"] == 54


def test_pe_config_has_exactly_the_msd_pe_pairs(msd_ws, msd_frame, msd_out, load) -> None:
    out, result = msd_out
    in_pe = msd_frame[msd_frame["in_pe"]]
    pe_pairs = sorted(set(in_pe["pair_id"]))
    # 28 pairs; the relabelled, the removed and the no-face pairs are not in the published MSD-PE
    assert len(set(msd_frame["pair_id"].dropna())) == 28
    assert len(pe_pairs) == 26  # relabelling breaks two pairs
    no_face_pair = msd_frame.loc[msd_frame["image_id"] == NO_FACE, "pair_id"].item()
    assert no_face_pair in pe_pairs
    published = [p for p in pe_pairs if p != no_face_pair]

    train = load(out, "pe")["train"]
    assert train["pair_id"] == published
    assert result.left_out["MSD-PE pair with a side without a face crop"] == 1
    by_id = msd_frame.set_index("image_id")
    for row in train.select(range(0, len(published), 5)):
        nm, m = by_id.loc[row["image_id_nonmasked"]], by_id.loc[row["image_id_masked"]]
        assert (nm["masked"], m["masked"]) == (False, True)
        assert nm["pair_id"] == m["pair_id"] == row["pair_id"]
        label = train.features["label"].int2str(row["label"])
        assert label == nm["label"] == m["label"]
        assert row["fold"] == nm["fold"] and row["subject_id"] == nm["subject_id"]
        assert np.array_equal(np.asarray(row["image_masked"]), np.asarray(Image.open(msd_ws.absolute(m["aligned_path"]))))
        assert np.array_equal(np.asarray(row["image_nonmasked"]), np.asarray(Image.open(msd_ws.absolute(nm["aligned_path"]))))


def test_splits_and_original_images(tmp_path, load) -> None:
    """FER2013: the source's splits become train/validation/test; originals are embedded unchanged."""
    ws = Workspace.resolve(tmp_path / "ws")
    csv = write(tmp_path / "src" / "fer2013.csv", fer2013_csv(fer_rows(20)))
    ingest(csv, ws, dataset="fer2013", align=False)
    frame = ws.load().frame

    result = publish(ws, tmp_path / "hf", images="original")
    assert result.counts == {"mix": {"train": 12, "validation": 4, "test": 4}}  # masked unknown: no nm, m, pe
    assert not result.gated
    ds = load(tmp_path / "hf", "mix")
    assert sorted(ds) == ["test", "train", "validation"]
    expected = frame[frame["split"] == "val"].sort_values("image_id")
    val = ds["validation"]
    assert val["image_id"] == expected["image_id"].tolist()
    assert [val.features["label"].int2str(i) for i in val["label"]] == expected["label"].tolist()
    first = expected.iloc[0]
    assert np.array_equal(np.asarray(val[0]["image"]), np.asarray(Image.open(ws.absolute(first["original_path"]))))
    assert "subject_id" not in val.features and "fold" not in val.features  # null everywhere
    assert "extra_gated_prompt" not in card_header(tmp_path / "hf")


def test_a_missing_image_file_is_named(tmp_path) -> None:
    ws = Workspace.resolve(tmp_path / "ws")
    ingest(write(tmp_path / "src" / "fer2013.csv", fer2013_csv(fer_rows(3))), ws, dataset="fer2013", align=False)
    gone = ws.absolute(ws.load().frame["original_path"].iloc[1])
    gone.unlink()
    with pytest.raises(PublishError, match=f"image {gone} is missing"):
        publish(ws, tmp_path / "hf", images="original")


def test_contempt_makes_eight_classes() -> None:
    rows = [{"image_id": str(i), "label_original": label, "label": label} for i, label in enumerate(["happy", "contempt"])]
    assert class_names_for(new_frame(rows)) == LABELS and len(LABELS) == 8
    assert class_names_for(new_frame(rows[:1])) == BASIC_LABELS and len(BASIC_LABELS) == 7


def test_aligned_images_need_alignment(tmp_path) -> None:
    ws = Workspace.resolve(tmp_path / "ws")
    ingest(write(tmp_path / "src" / "fer2013.csv", fer2013_csv(fer_rows(3))), ws, dataset="fer2013", align=False)
    with pytest.raises(PublishError, match="run ferdata align, or pass images='original'"):
        publish(ws, tmp_path / "hf")


# ----------------------------------------------------------------------------- card


def test_card_yaml_names_every_config_and_the_gating(msd_out) -> None:
    out, result = msd_out
    header = card_header(out)
    assert [c["config_name"] for c in header["configs"]] == ["mix", "nm", "m", "pe"] == result.configs
    assert header["configs"][0]["default"] is True
    for config in header["configs"]:
        assert config["data_files"] == [{"split": "train", "path": f"data/{config['config_name']}/train-*"}]
    assert header["license"] == "other"
    terms = terms_of("msd-e")
    assert header["extra_gated_prompt"] == " ".join(terms["text"].split())
    assert set(header["extra_gated_fields"].values()) == {"text", "checkbox"}
    info = {c["config_name"]: c for c in header["dataset_info"]}
    assert info["mix"]["splits"] == [{"name": "train", "num_examples": 54}]
    assert info["pe"]["splits"] == [{"name": "train", "num_examples": 25}]
    label = next(f for f in info["mix"]["features"] if f["name"] == "label")
    assert label["dtype"]["class_label"]["names"] == {str(i): n for i, n in enumerate(BASIC_LABELS)}
    assert [f["name"] for f in info["pe"]["features"]][:3] == ["image_nonmasked", "image_masked", "label"]


def test_card_yaml_is_plain_stable_and_unfolded(msd_out) -> None:
    """PyYAML writes the header: no anchors or aliases between configs, one line per value however
    long, and dumping the parsed header again gives the same bytes."""
    out, _ = msd_out
    text = (out / "README.md").read_text().split("---\n")[1]
    assert "&id" not in text and "*id" not in text
    prompt = next(line for line in text.splitlines() if line.startswith("extra_gated_prompt: "))
    assert len(prompt) > 200 and prompt.endswith("cite the paper in any publication.")
    assert yaml_text(card_header(out)) + "\n" == text
    tricky = {"title": "Émotions: \"FER\" # not a comment", "words": ["no", "null", "1.0", "- x", "~"], "long": "w " * 80,
              "empty": [], "ids": {"0": "surprise"}}
    dumped = yaml_text(tricky)
    assert yaml.safe_load(dumped) == tricky and len(dumped.splitlines()) == 11 and "Émotions" in dumped


def test_card_tells_how_the_data_was_curated(msd_out) -> None:
    out, _ = msd_out
    body = (out / "README.md").read_text().split("---\n", 2)[2]
    assert CARD_MARKER in body
    assert "scheme `msd-e`: the winning class needs at least 0.5 of the annotators, another class at most 0.25 (`total` rule)" in body
    assert "seed 1234" in body
    assert "detector `retinaface` on `CPUExecutionProvider`" in body
    assert "by ferdata 0.1.0" in body and "publish**: ferdata 0.1.0" in body
    assert "@misc{msde" in body and "Not for redistribution" in body
    assert "| mix | train | 54 | 7 | 8 | 7 |" in body  # a surprise relabelled fear; a fear removed; a disgust without face
    assert "label removed by relabelling: 1" in body and "no face crop (no face found): 1" in body


def test_shard_metadata_is_derived_from_the_schema(msd_out) -> None:
    out, _ = msd_out
    schema = pq.read_schema(next((out / "data" / "mix").glob("train-*.parquet")))
    assert b"huggingface" in schema.metadata
    for name in ("image_id", "subject_id", "masked", "occlusion", "fold", "pair_id", "in_pe", "det_score", "sha256"):
        assert schema.field(name).type == column(name).arrow_type, name
    assert str(schema.field("image").type) == "struct<bytes: binary, path: string>"
    meta = pq.ParquetFile(next((out / "data" / "mix").glob("train-*.parquet"))).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [54]


def test_the_layout_module_names_what_publish_writes(msd_out) -> None:
    """What publish wrote is what layout says: shard names and splits, the image shards a reader
    takes (mix, never pe), the dataset named by the card, a folder recognised as publish's."""
    out, result = msd_out
    shards = [p for p in result.files if p.suffix == ".parquet"]
    assert [p.relative_to(out).as_posix() for p in shards] == [
        f"data/{c}/{layout.shard_name('train', 0, 1)}" for c in ("mix", "nm", "m", "pe")
    ]
    assert all(layout.split_of(p) == "train" for p in shards)
    assert layout.split_of("validation-00003-of-00010.parquet") == "val" and layout.split_of("notes.parquet") is None
    assert layout.hub_split("val") == "validation" and layout.hub_split(None) == "train"
    assert layout.image_shards(out) == [out / "data" / "mix" / "train-00000-of-00001.parquet"]
    assert layout.dataset_name(out) == "msd-e" and layout.written_by_publish(out)
    assert [c["data_files"][0]["path"] for c in card_header(out)["configs"]] == [layout.data_files(c, "train") for c in result.configs]


def test_the_layout_module_is_light() -> None:
    """The trainer (and anyone) reads the layout without pandas or pyarrow being imported."""
    code = "import sys, ferdata.publish.layout; print(sorted({'pandas', 'pyarrow', 'yaml'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_row_groups_are_capped_in_bytes(msd_ws, tmp_path, monkeypatch) -> None:
    import importlib

    crop = max(p.stat().st_size for p in (msd_ws.aligned_dir("msd-e") / "112px").iterdir())
    shards = importlib.import_module("ferdata.publish.shards")  # `ferdata.publish` is the function
    monkeypatch.setattr(shards, "ROW_GROUP_MAX_BYTES", 6 * crop)  # a pe row holds two crops
    publish(msd_ws, tmp_path / "hf", configs=["pe"])
    meta = pq.ParquetFile(tmp_path / "hf" / "data" / "pe" / "train-00000-of-00001.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [3] * 8 + [1]


# ----------------------------------------------------------------------------- determinism, options


def test_republishing_gives_byte_identical_files(msd_ws, msd_out, tmp_path) -> None:
    out, first = msd_out
    again = publish(msd_ws, tmp_path / "again")
    assert [p.relative_to(tmp_path / "again") for p in again.files] == [p.relative_to(out) for p in first.files]
    for a, b in zip(first.files, again.files):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_shard_count_changes_replace_old_shards(msd_ws, tmp_path) -> None:
    out = tmp_path / "hf"
    publish(msd_ws, out, shards=3, configs=["mix"])
    names = sorted(p.name for p in (out / "data" / "mix").iterdir())
    assert names == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    rows = [pq.ParquetFile(out / "data" / "mix" / n).metadata.num_rows for n in names]
    assert rows == [18, 18, 18]
    publish(msd_ws, out, configs=["mix", "pe"])
    assert sorted(p.relative_to(out).as_posix() for p in (out / "data").rglob("*")) == [
        "data/mix", "data/mix/train-00000-of-00001.parquet", "data/pe", "data/pe/train-00000-of-00001.parquet",
    ]


def test_removed_rows_only_with_include_removed(msd_ws, msd_out, tmp_path, load) -> None:
    _, default = msd_out
    assert default.left_out["label removed by relabelling"] == 1
    result = publish(msd_ws, tmp_path / "audit", include_removed=True, configs=["mix", "nm"])
    assert result.counts == {"mix": {"train": 55}, "nm": {"train": 28}}
    assert "label removed by relabelling" not in result.left_out
    train = load(tmp_path / "audit", "nm")["train"]
    row = train[train["image_id"].index(REMOVED)]
    assert row["label"] is None and row["label_status"] == "removed"
    assert sum(s == "removed" for s in train["label_status"]) == 1


def test_refuses_a_folder_it_did_not_write(msd_ws, tmp_path) -> None:
    foreign = tmp_path / "mine"
    write(foreign / "notes.txt", b"keep me")
    with pytest.raises(UsageError, match="not empty and was not written by ferdata publish"):
        publish(msd_ws, foreign)
    assert (foreign / "notes.txt").read_bytes() == b"keep me"
    with pytest.raises(UsageError, match="unknown config pairs"):
        publish(msd_ws, tmp_path / "x", configs=["pairs"])


# ----------------------------------------------------------------------------- push


@pytest.fixture
def no_hub_login(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.setattr(hub, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf-home" / "stored_tokens"), raising=False)
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    return hub


def test_push_without_a_token_fails_clearly(msd_ws, tmp_path, no_hub_login) -> None:
    with pytest.raises(PublishError, match="no Hugging Face token"):
        publish(msd_ws, tmp_path / "hf", push="lab/msd-e", configs=["pe"])
    assert not (tmp_path / "hf").exists()  # checked before minutes of writing


def test_push_to_an_unreachable_hub_fails_fast(msd_ws, tmp_path, no_hub_login, monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: connection refused
    monkeypatch.setattr(no_hub_login, "ENDPOINT", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(PublishError, match="cannot reach the Hub"):
        publish(msd_ws, tmp_path / "hf", push="lab/msd-e", configs=["pe"])
    assert time.monotonic() - started < 20
    assert not (tmp_path / "hf").exists()


def test_push_to_a_silent_hub_times_out(msd_ws, tmp_path, no_hub_login, monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts connections, never answers
    monkeypatch.setattr(no_hub_login, "ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
    started = time.monotonic()
    try:
        with pytest.raises(PublishError, match="no answer from .* within 1 s"):
            publish(msd_ws, tmp_path / "hf", push="lab/msd-e", configs=["pe"], push_timeout=1)
    finally:
        silent.close()
    assert time.monotonic() - started < 10


def test_public_copies_of_gated_datasets(msd_ws, tmp_path) -> None:
    terms = terms_of("msd-e")
    assert terms["gated"]
    with pytest.raises(PublishError, match="not to be redistributed outside the licensee's lab"):
        check_push_allowed("msd-e", terms, public=False, repo_private=False)
    check_push_allowed("msd-e", terms, public=False, repo_private=True)
    check_push_allowed("msd-e", terms, public=True, repo_private=False)
    check_push_allowed("fer2013", terms_of("fer2013"), public=False, repo_private=False)
    with pytest.raises(UsageError, match=r"public=True only applies with push=REPO_ID"):
        publish(msd_ws, tmp_path / "hf", public=True)


# ----------------------------------------------------------------------------- CLI


def test_cli_publish(msd_ws, tmp_path) -> None:
    out = tmp_path / "cli-hf"
    result = CliRunner().invoke(app, ["publish", "-w", str(msd_ws.root), "--out", str(out), "--config", "nm", "--config", "pe"])
    assert result.exit_code == 0, result.output
    assert [c["config_name"] for c in card_header(out)["configs"]] == ["nm", "pe"]
    assert pq.ParquetFile(out / "data" / "nm" / "train-00000-of-00001.parquet").metadata.num_rows == 27


@pytest.mark.parametrize(
    "kwargs, args, library, cli",
    [
        ({"images": "raw"}, ["--images", "raw"], "images='raw' is not one of aligned, original",
         "--images raw is not one of aligned, original"),
        ({"public": True}, ["--public"], "public=True only applies with push=REPO_ID",
         "--public only applies with --push REPO_ID"),
        ({"shards": 0}, ["--shards", "0"], "shards=0 must be 1 or more", "--shards 0 must be 1 or more"),
        ({"workers": -1}, ["--workers", "-1"], "workers=-1 must be 1 or more", "--workers -1 must be 1 or more"),
    ],
)
def test_errors_name_arguments_in_python_and_flags_in_the_cli(msd_ws, tmp_path, kwargs, args, library, cli) -> None:
    with pytest.raises(UsageError) as caught:
        publish(msd_ws, tmp_path / "o", **kwargs)
    assert library in str(caught.value) and "--" not in str(caught.value)
    result = CliRunner().invoke(app, ["publish", "-w", str(msd_ws.root), "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 1
    assert f"error: {cli}" in result.output and library not in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_out_dir_errors_name_the_folder(msd_ws, tmp_path) -> None:
    """The library says out_dir, the CLI --out; a folder named like the argument stays as it is."""
    taken = write(tmp_path / "out_dir" / "a-file", b"not a folder")
    with pytest.raises(UsageError, match=f"^out_dir {re.escape(str(taken))} is a file: choose a folder$"):
        publish(msd_ws, taken)
    result = CliRunner().invoke(app, ["publish", "-w", str(msd_ws.root), "--out", str(taken)])
    assert result.exit_code == 1
    assert f"error: --out {taken} is a file" in result.output.replace("\n", "")


def test_one_config_may_be_given_as_a_string(msd_ws, tmp_path) -> None:
    assert publish(msd_ws, tmp_path / "hf", configs="pe").configs == ["pe"]


# ----------------------------------------------------------------------------- usable rows


def quarter_without_faces(root: Path, subjects: int = 100, seed: int = 0) -> Workspace:
    """MSD-E-like: 7-21 images per subject, masked twins; a quarter of the subjects hold no visible
    face (face_status no_face, no crop), the others an aligned crop per image (random pixels, so
    that no two images look alike)."""
    rng = np.random.default_rng(seed)
    ws = Workspace.resolve(root)
    weights = np.array([249, 249, 241, 357, 265, 247, 352], dtype=float) / 1960
    rows = []
    for s in range(subjects):
        faceless = s % 4 == 3
        n = int(rng.integers(7, 22))
        for i in range(n):
            if i % 2 == 0:
                label = BASIC_LABELS[int(rng.choice(7, p=weights))]
            image_id = f"s{s:03d}-{i:02d}"
            original = f"originals/msd-e/{image_id}.png"
            pixels = rng.integers(0, 256, (24, 24), dtype=np.uint8)
            write(ws.absolute(original), _png(pixels))
            row = {
                "image_id": image_id, "dataset": "msd-e", "source": image_id, "subject_id": f"s{s:03d}",
                "sha256": hashlib.sha256(pixels.tobytes()).hexdigest(), "label_original": label, "label": label,
                "masked": bool(i % 2), "pair_id": f"s{s:03d}-p{i // 2}" if i % 2 or i + 1 < n else None,
                "original_path": original, "width": 24, "height": 24,
                "face_status": "no_face" if faceless else "aligned", "n_faces": 0 if faceless else 1,
            }
            if not faceless:
                row["aligned_path"] = f"aligned/msd-e/{image_id}.png"
                write(ws.absolute(row["aligned_path"]), _png(pixels))
            rows.append(row)
    ws.save(Manifest("msd-e", new_frame(rows)))
    return ws


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("seed", [0, 1])
def test_quarter_without_faces_publishes_even_folds_with_every_label(tmp_path, seed: int) -> None:
    ws = quarter_without_faces(tmp_path / "ws", seed=seed)
    runner = CliRunner()
    folded = runner.invoke(app, ["folds", "--k", "5", "--seed", str(seed), "--workers", "1", "-w", str(ws.root)])
    assert folded.exit_code == 0, folded.output
    frame = ws.load().frame
    assert frame["fold"].notna().all()  # rows without a face get a fold too
    prov = ws.load().provenance["folds"]
    assert prov["balanced_on"].startswith("usable") and prov["groups_placed_by_name"] == 25
    published = runner.invoke(app, ["publish", "-w", str(ws.root), "--out", str(tmp_path / "hf"), "--config", "mix"])
    assert published.exit_code == 0, published.output
    no_face = int((frame["face_status"] == "no_face").sum())
    assert f"left out: no face crop (no face found): {no_face:,}" in published.output
    table = pq.read_table(sorted((tmp_path / "hf" / "data" / "mix").glob("train-*.parquet"))).to_pandas()
    assert len(table) == len(frame) - no_face
    sizes = table["fold"].value_counts().sort_index()
    assert sizes.index.tolist() == [0, 1, 2, 3, 4]
    deviation = (sizes / sizes.mean() - 1).abs().max()
    assert deviation <= 0.05, sizes.to_dict()
    labels = table.groupby("fold")["label"].nunique()
    assert (labels == 7).all(), labels.to_dict()
    # the card and stats report what was published
    card = (tmp_path / "hf" / "README.md").read_text()
    assert "Published `mix` images per fold: " + ", ".join(f"fold {f}: {n:,}" for f, n in sizes.items()) in card
    stats = runner.invoke(app, ["stats", "--json", "-w", str(ws.root)])
    data = __import__("json").loads(stats.stdout)
    assert data["counted"] == "usable" and data["usable"] == len(table)
    assert data["tables"]["label × fold"]["total"] == {**{str(f): int(n) for f, n in sizes.items()}, "total": len(table)}
    assert data["left_out"] == {"no face crop (no face found)": no_face}
