"""Where things lie in a published dataset folder: the one module that knows it.

``publish`` writes by these names and the trainer reads by them; nothing else spells a shard
name or a Hub split. The layout is the Hub's own convention, which ``datasets.load_dataset``
reads through the ``configs:`` block of the card::

    DIR/
      README.md                                        the dataset card (YAML header + prose)
      data/<config>/<split>-00000-of-00002.parquet     configs mix, nm, m, pe; Hub split names

Pure: names and paths, plus read-only looks into a folder (is it publish's? which shards hold
one row per image? which dataset?). No pandas, no pyarrow; PyYAML only when a card is read.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..fsutil import TEMP_PREFIX

CARD = "README.md"
DATA = "data"

# mix: every published image; nm: non-masked; m: masked; pe: one row per MSD-PE pair
CONFIGS = ("mix", "nm", "m", "pe")
PAIR_CONFIG = "pe"
# the configs holding one row per image, in the order a reader prefers them: mix alone holds
# every image; nm and m together hold them too when mix was not published
IMAGE_CONFIGS = (("mix",), ("nm", "m"))

# manifest split -> Hub split name (the Hub's viewer and trainers expect "validation"); rows
# without a split are published in "train"
HUB_SPLITS = {"train": "train", "val": "validation", "test": "test"}
MANIFEST_SPLITS = {hub: split for split, hub in HUB_SPLITS.items()}
DEFAULT_HUB_SPLIT = "train"

# The names publish gives its shards (five digits, as datasets writes them): only these, beside
# temporary files, make a folder without a card look like a killed publish.
_OWN_SHARD = re.compile(r"(?:train|validation|test)-\d{5}-of-\d{5}\.parquet")
# Any Hub-style shard name (another tool's digit count too): the split a reader takes from it.
_HUB_SHARD = re.compile(r"(train|validation|test)-\d+-of-\d+\.parquet")

# The card's first line after the YAML header: a folder whose card holds it was written by publish.
CARD_MARKER = "<!-- written by ferdata publish: edits are lost when it runs again -->"
# The card names the dataset's terms ``<dataset>-terms`` (``license_name``); readers take the
# dataset's name from it.
_TERMS_SUFFIX = "-terms"


def hub_split(split: Any) -> str:
    """The Hub split that a manifest ``split`` value is published in."""
    return HUB_SPLITS.get(split, DEFAULT_HUB_SPLIT) if isinstance(split, str) else DEFAULT_HUB_SPLIT


def shard_name(split: str, index: int, count: int) -> str:
    """``train-00001-of-00004.parquet``: shard ``index`` (from 0) of ``count`` of a Hub split."""
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


def shard_path(out_dir: Path, config: str, split: str, index: int, count: int) -> Path:
    return out_dir / DATA / config / shard_name(split, index, count)


def data_files(config: str, split: str) -> str:
    """The card's ``data_files`` pattern of one config and Hub split (relative to the folder)."""
    return f"{DATA}/{config}/{split}-*"


def split_of(shard: Path | str) -> str | None:
    """The manifest split (``train``, ``val``, ``test``) a Hub-style shard name says; None if it says none."""
    match = _HUB_SHARD.fullmatch(Path(shard).name)
    return MANIFEST_SPLITS[match.group(1)] if match else None


def license_name(dataset: str) -> str:
    """The card's ``license_name`` for ``dataset``'s own terms."""
    return dataset + _TERMS_SUFFIX


def card_header(folder: Path) -> dict[str, Any]:
    """The YAML header of ``folder``'s card; empty when there is no card or it has no header."""
    card = folder / CARD
    text = card.read_text(encoding="utf-8", errors="replace") if card.is_file() else ""
    if not text.startswith("---\n"):
        return {}
    import yaml

    try:
        header = yaml.safe_load(text.split("---\n", 2)[1])
    except (yaml.YAMLError, IndexError):
        return {}
    return header if isinstance(header, dict) else {}


def dataset_name(folder: Path) -> str:
    """The dataset a published folder holds (``license_name: <dataset>-terms`` in its card); the
    folder's name when the card does not say."""
    name = card_header(folder).get("license_name")
    if isinstance(name, str) and name.endswith(_TERMS_SUFFIX) and len(name) > len(_TERMS_SUFFIX):
        return name.removesuffix(_TERMS_SUFFIX)
    return folder.name


def _parquet_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))


def image_shards(folder: Path) -> list[Path]:
    """The shards holding one row per image: ``data/mix/`` (else ``data/nm/`` + ``data/m/``) of a
    publish folder, or every Parquet file of another folder outside a ``pe`` folder. The ``pe``
    config (one row per pair) is never among them: pairs come from the image rows' ``pair_id``."""
    for configs in IMAGE_CONFIGS:
        shards = sorted(p for config in configs for p in _parquet_files(folder / DATA / config))
        if shards:
            return shards
    return sorted(
        p
        for p in folder.rglob("*.parquet")
        if not p.name.startswith(".") and PAIR_CONFIG not in p.relative_to(folder).parts[:-1]
    )


def _own_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _shard_folder(folder: Path) -> bool:
    """``data/<config>/`` holding only publish's shard names and temporary files."""
    return (
        folder.name in CONFIGS
        and folder.is_dir()
        and not folder.is_symlink()
        and all(
            _own_file(f) and (f.name.startswith(TEMP_PREFIX) or _OWN_SHARD.fullmatch(f.name)) for f in folder.iterdir()
        )
    )


def written_by_publish(folder: Path) -> bool:
    """Whether ``folder`` holds only what publish writes: its card, or, when a publish was killed
    before the card, nothing but shards and temporary files under publish's own names."""
    card = folder / CARD
    if card.is_file():
        return CARD_MARKER in card.read_text(encoding="utf-8", errors="replace")
    for entry in folder.iterdir():
        if entry.name.startswith(TEMP_PREFIX) and _own_file(entry):
            continue
        if (
            entry.name == DATA
            and entry.is_dir()
            and not entry.is_symlink()
            and all(map(_shard_folder, entry.iterdir()))
        ):
            continue
        return False
    return True


def stale_files(folder: Path, written: set[Path]) -> list[Path]:
    """What a publish into ``folder`` leaves behind once it wrote ``written``: shards of an earlier
    publish (another shard count or config) and temporary files of a killed one."""
    stale = set(folder.glob(f"{TEMP_PREFIX}*"))
    data = folder / DATA
    if data.is_dir():
        stale |= {p for p in data.glob("*/*.parquet") if p not in written}  # a temporary shard too
        stale |= set(data.glob(f"*/{TEMP_PREFIX}*"))
    return sorted(stale)


def empty_config_folders(folder: Path) -> list[Path]:
    data = folder / DATA
    return [f for f in sorted(data.iterdir()) if f.is_dir() and not any(f.iterdir())] if data.is_dir() else []
