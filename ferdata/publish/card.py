"""The dataset card (``README.md``): a YAML header the Hub and ``datasets`` read, then prose.

The header carries the licence (with ``license_link`` where the dataset's terms have a known
address, ``[terms] url`` of ``manifests/<dataset>.toml``), ``size_categories`` and, for a gated
dataset, the Hub's gating fields; ``configs:`` (each config's ``data_files``, the first one the
default) and ``dataset_info`` (features; per split ``num_bytes`` and ``num_examples``, both of
which ``datasets`` needs to take the split sizes from the card). It is written by PyYAML's safe dumper in the order built here: never sorted, never
folded, no anchors, so the same workspace gives the same bytes.

The prose says what the data is, how to load it (a snippet that batches it with a shuffled torch
``DataLoader``, run as printed by the tests), the counts per config, split and label, what
was left out and why, every column, how the data was curated (from the manifest's provenance),
the terms of use and the citation. Everything the card says comes from :class:`CardFacts`, and
each part of the card is one function of it: the header's blocks (:func:`configs_block`,
:func:`dataset_info_block`) and the prose's sections (:data:`SECTIONS`), so a new fact is one
more field and a new block or section one more function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .. import __version__
from ..errors import FerdataError
from ..schema import Manifest
from . import layout
from .plan import Part, fold_counts

# the Hub's access-request form for a gated dataset
GATED_FIELDS = {
    "Name": "text",
    "Affiliation (university or lab)": "text",
    "Institutional e-mail": "text",
    "I received this dataset from its authors and will not share it outside my lab": "checkbox",
}

CONFIG_DOCS = {
    "mix": "every published image, non-masked and masked",
    "nm": "non-masked images (`masked` false)",
    "m": "masked images (`masked` true)",
    "pe": "one row per MSD-PE pair: the non-masked and the masked image of one subject and expression, same label",
}


def terms_of(dataset: str) -> dict[str, Any]:
    """The ``[terms]`` and ``title`` of ``manifests/<dataset>.toml`` (empty terms if it has none)."""
    from ..resources import load_toml

    try:
        facts = load_toml(dataset)
    except FerdataError:
        facts = {}
    terms = dict(facts.get("terms", {}))
    terms.setdefault("license", "other")
    terms["gated"] = bool(terms.get("gated", False))
    terms["title"] = facts.get("title", dataset)
    return terms


@dataclass(frozen=True)
class CardFacts:
    """What the card is written from: the workspace's manifest and the published parts."""

    manifest: Manifest
    parts: Sequence[Part]
    terms: dict[str, Any]  # terms_of(dataset)
    images: str  # "aligned" or "original"
    class_names: tuple[str, ...]
    left_out: dict[str, int]  # reason -> rows
    include_removed: bool

    @property
    def dataset(self) -> str:
        return self.manifest.dataset

    def images_published(self) -> int:
        """Images in the published folder: the rows of ``mix``, else of ``nm`` and ``m``, else two per ``pe`` row."""
        rows = {config: sum(p.n for p in parts) for config, parts in self.configs().items()}
        for configs in layout.IMAGE_CONFIGS:
            if any(c in rows for c in configs):
                return sum(rows.get(c, 0) for c in configs)
        return 2 * rows.get(layout.PAIR_CONFIG, 0)

    def configs(self) -> dict[str, list[Part]]:
        """The parts of each config, in publishing order."""
        out: dict[str, list[Part]] = {}
        for part in self.parts:
            out.setdefault(part.config, []).append(part)
        return out


def dataset_card(card: CardFacts) -> str:
    """README.md: YAML header, then the prose sections."""
    out = ["---", yaml_text(card_header(card)), "---", "", layout.CARD_MARKER, ""]
    for section in SECTIONS:
        out += section(card)
    return "\n".join(out)


# ----------------------------------------------------------------------------- YAML header


def yaml_text(header: dict[str, Any]) -> str:
    """``header`` as YAML: keys in the order given, any Unicode as is, no line ever folded, and
    every value written out where it stands (configs share their feature entries, which a plain
    dump would turn into ``&id001`` anchors and ``*id001`` aliases)."""
    import yaml

    class Dumper(yaml.SafeDumper):  # the pure-Python emitter: the same bytes with or without libyaml
        def ignore_aliases(self, data: Any) -> bool:
            return True

    text = yaml.dump(
        header, Dumper=Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=float("inf")
    )
    return text.removesuffix("\n")


def card_header(card: CardFacts) -> dict[str, Any]:
    """The card's YAML header: licence, gating, configs and their features and split sizes."""
    terms = card.terms
    header: dict[str, Any] = {
        "pretty_name": f"{terms['title']} (curated with ferdata)",
        "license": terms.get("license", "other"),
    }
    if header["license"] == "other":
        header["license_name"] = layout.license_name(card.dataset)
        if terms.get("url"):
            header["license_link"] = terms["url"]
    header["task_categories"] = ["image-classification"]
    header["size_categories"] = [size_category(card.images_published())]
    header["tags"] = ["facial-expression-recognition", "ferdata"]
    if terms["gated"]:
        header["extra_gated_prompt"] = " ".join(terms.get("text", terms.get("summary", "")).split())
        header["extra_gated_fields"] = dict(GATED_FIELDS)
    header["configs"] = configs_block(card)
    header["dataset_info"] = dataset_info_block(card)
    return header


def configs_block(card: CardFacts) -> list[dict[str, Any]]:
    """Where ``datasets`` finds each config's splits; the first config is the default."""
    return [
        {
            "config_name": name,
            **({"default": True} if i == 0 else {}),
            "data_files": [{"split": p.split, "path": layout.data_files(name, p.split)} for p in parts],
        }
        for i, (name, parts) in enumerate(card.configs().items())
    ]


def dataset_info_block(card: CardFacts) -> list[dict[str, Any]]:
    """Each config's features, split sizes (rows and Arrow bytes, which ``datasets`` needs both
    of to read them) and sizes on disk, as the Hub writes them."""
    return [
        {
            "config_name": name,
            "features": [f.card for f in parts[0].features],
            "splits": [{"name": p.split, "num_bytes": p.num_bytes, "num_examples": p.n} for p in parts],
            "download_size": sum(f.stat().st_size for p in parts for f in p.files),
            "dataset_size": sum(p.num_bytes for p in parts),
        }
        for name, parts in card.configs().items()
    ]


# the Hub's size_categories: (upper bound, name), by number of examples
SIZE_CATEGORIES = (
    (10**3, "n<1K"),
    (10**4, "1K<n<10K"),
    (10**5, "10K<n<100K"),
    (10**6, "100K<n<1M"),
    (10**7, "1M<n<10M"),
    (10**8, "10M<n<100M"),
    (10**9, "100M<n<1B"),
    (10**10, "1B<n<10B"),
    (10**11, "10B<n<100B"),
    (10**12, "100B<n<1T"),
)


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` value for ``n`` examples."""
    return next((name for bound, name in SIZE_CATEGORIES if n < bound), "n>1T")


# ----------------------------------------------------------------------------- prose


def _intro(card: CardFacts) -> list[str]:
    terms = card.terms
    what = "aligned face crops" if card.images == "aligned" else "original images"
    out = [
        f"# {terms['title']}, curated with ferdata",
        "",
        (
            f"{terms['title']} (`{card.dataset}`) as curated in one licensee's ferdata workspace: a facial expression "
            f"recognition dataset with canonical labels ({', '.join(card.class_names)}), {what} embedded as "
            "`Image`, and the curation columns of the ferdata manifest."
        ),
        "",
    ]
    if terms["gated"]:
        out += [
            (
                f"**Not for redistribution.** {terms.get('summary', '')} Keep any copy of this folder or repository "
                "private to your lab (see *Terms of use*)."
            ),
            "",
        ]
    return out


# the path a reader replaces in the card's snippets (a test runs them with the real folder)
LOAD_PATH = "path/to/this/folder"
# the side original images are resized to in the snippet: they differ in size, a batch cannot
ORIGINAL_SIDE = 224


def _loader_lines(card: CardFacts, config: str, images: tuple[str, ...], name: str) -> list[str]:
    """Lines that load ``config`` and batch its ``images`` and ``label`` with a shuffled torch DataLoader."""
    split = card.configs()[config][0].split
    quoted = [f'"{c}"' for c in images]
    columns = ", ".join([*quoted, '"label"'])
    lines = [f'{name} = load_dataset(folder, "{config}")["{split}"]']
    if card.include_removed and config != layout.PAIR_CONFIG:  # a pair's images both have a label
        lines.append(
            f'{name} = {name}.filter(lambda label: label is not None, input_columns="label")  # removed images have none'
        )
    if card.images == "aligned":
        lines.append(
            f'{name} = {name}.select_columns([{columns}]).with_format("torch")  # images: uint8 tensors (C, H, W)'
        )
    else:
        lines.append(f"{name} = {name}.select_columns([{columns}]).with_transform(to_tensors({', '.join(quoted)}))")
    return lines


def _load(card: CardFacts) -> list[str]:
    """A snippet that loads the default config (and ``pe``) and batches it with torch; it runs as printed."""
    configs = card.configs()
    first = card.parts[0].config
    out = [
        "## Load",
        "",
        (
            "A shuffled torch `DataLoader` batches columns of one size and type: keep the columns a model needs "
            "(`select_columns`), since a list column such as `occlusion` varies in length from row to row. "
            + (
                'The aligned crops all have one size, so `with_format("torch")` batches them as they are.'
                if card.images == "aligned"
                else f"The original images differ in size: the snippet resizes them to {ORIGINAL_SIDE}×{ORIGINAL_SIDE}."
            )
        ),
        "",
        "```python",
    ]
    if card.images != "aligned":
        out += ["import numpy as np", "import torch"]
    out += [
        "from datasets import load_dataset",
        "from torch.utils.data import DataLoader",
        "",
        f'folder = "{LOAD_PATH}"  # or the Hub repo id',
        "",
    ]
    if card.images != "aligned":
        out += [
            "",
            "def to_tensors(*columns):",
            "    def convert(batch):",
            "        for column in columns:",
            f'            batch[column] = [torch.from_numpy(np.array(im.convert("RGB").resize(({ORIGINAL_SIDE}, {ORIGINAL_SIDE})))).permute(2, 0, 1)',
            "                             for im in batch[column]]",
            "        return batch",
            "    return convert",
            "",
            "",
        ]
    if first != layout.PAIR_CONFIG:
        out += _loader_lines(card, first, ("image",), "images")
        out += [
            "batch = next(iter(DataLoader(images, batch_size=32, shuffle=True)))",
            'print(batch["image"].shape, batch["label"][:8])',
        ]
    if layout.PAIR_CONFIG in configs:
        if first != layout.PAIR_CONFIG:
            out += ["", "# pe: one row per MSD-PE pair, both images of the pair side by side"]
        out += _loader_lines(card, layout.PAIR_CONFIG, ("image_nonmasked", "image_masked"), "pairs")
        out += [
            "batch = next(iter(DataLoader(pairs, batch_size=16, shuffle=True)))",
            'print(batch["image_nonmasked"].shape, batch["image_masked"].shape, batch["label"][:8])',
        ]
    return out + ["```", ""]


def _label_counts(part: Part, class_names: tuple[str, ...]) -> dict[str, int]:
    labels = pd.Series(part.rows.column("label").to_pylist(), dtype=object)
    counts = {name: int((labels == name).sum()) for name in class_names}
    if labels.isna().any():
        counts["(removed)"] = int(labels.isna().sum())
    return counts


def _counts_table(parts: Sequence[Part], class_names: tuple[str, ...]) -> list[str]:
    label_cols = list(class_names) + (
        ["(removed)"] if any(None in p.rows.column("label").to_pylist() for p in parts) else []
    )
    lines = ["| config | split | rows | " + " | ".join(label_cols) + " |", "|---|---|---:|" + "---:|" * len(label_cols)]
    for part in parts:
        counts = _label_counts(part, class_names)
        lines.append(
            f"| {part.config} | {part.split} | {part.n:,} | "
            + " | ".join(f"{counts.get(c, 0):,}" for c in label_cols)
            + " |"
        )
    return lines


def _fold_lines(parts: Sequence[Part]) -> list[str]:
    counts = fold_counts(parts)
    if not counts:
        return []
    mean = sum(counts.values()) / len(counts)
    worst = max(abs(n / mean - 1) for n in counts.values())
    listed = ", ".join(f"fold {f}: {n:,}" for f, n in counts.items())
    return [f"Published `mix` images per fold: {listed} (largest deviation from the mean: {worst:.1%}).", ""]


def _configs_and_counts(card: CardFacts) -> list[str]:
    out = ["## Configs and counts", ""]
    out += [f"- `{c}`: {CONFIG_DOCS[c]}" for c in card.configs()]
    out += ["", "Folds are a column (`fold`), not splits: cross-validate inside `train`.", ""]
    out += _counts_table(card.parts, card.class_names) + [""]
    out += _fold_lines(card.parts)
    if card.left_out:
        out += ["Left out: " + "; ".join(f"{reason}: {n:,}" for reason, n in card.left_out.items()) + ".", ""]
    return out


def _columns(card: CardFacts) -> list[str]:
    """Each config's columns as published (the image configs share theirs)."""
    out = ["## Columns", ""]
    groups: dict[tuple[str, ...], list[str]] = {}
    for config, parts in card.configs().items():
        groups.setdefault(tuple(f.name for f in parts[0].features), []).append(config)
    for configs in groups.values():
        features = card.configs()[configs[0]][0].features
        if len(groups) > 1:
            what = "one row per pair" if configs == [layout.PAIR_CONFIG] else "one row per image"
            out += [", ".join(f"`{c}`" for c in configs) + f" ({what}):", ""]
        out += [f"- `{f.name}` ({f.kind}): {f.doc}" for f in features] + [""]
    return out


def _curation(card: CardFacts) -> list[str]:
    """One line per step that shaped the data, from the manifest's provenance."""
    provenance, images = card.manifest.provenance, card.images
    lines = ["## Curation", ""]
    ingest = provenance.get("ingest")
    if ingest:
        lines.append(
            f"- **ingest**: {ingest.get('rows', '?')} images read from `{ingest.get('archive', '?')}` "
            f"by ferdata {ingest.get('ferdata_version', '?')} (adapter `{ingest.get('adapter', '?')}`)."
        )
    align = provenance.get("align")
    if align:
        model = f" (model SHA-256 `{align['model_sha256'][:16]}…`)" if align.get("model_sha256") else ""
        lines.append(
            f"- **face alignment**: detector `{align.get('detector', '?')}` on `{align.get('provider', '?')}`{model}, "
            f"5-point similarity transform to a {align.get('size', '?')}×{align.get('size', '?')} crop; faces: "
            + ", ".join(f"{k} {v}" for k, v in align.get("counts", {}).items())
            + "."
        )
    else:
        lines.append("- **face alignment**: not run.")
    relabel = provenance.get("relabel")
    if relabel:
        rule = f"scheme `{relabel.get('scheme', '?')}`"
        if relabel.get("scheme") == "msd-e":
            rule += (
                f": the winning class needs at least {relabel.get('min_agree')} of the annotators, "
                f"another class at most {relabel.get('max_other')} (`{relabel.get('other_rule')}` rule), "
                f"annotators: {relabel.get('annotators')}"
            )
        lines.append(
            f"- **relabelling** (paper section 2.2): {rule}; votes file SHA-256 "
            f"`{str(relabel.get('votes_sha256', '?'))[:16]}…`."
        )
    else:
        lines.append("- **relabelling**: not run; labels are the source's.")
    pairs = provenance.get("pairs")
    if pairs:
        lines.append(
            f"- **pairs**: {pairs.get('pairs', '?')} non-masked/masked pairs, {pairs.get('in_pe', '?')} in MSD-PE "
            "(both sides keep the same label)."
        )
    folds = provenance.get("folds")
    if folds:
        lines.append(
            f"- **folds**: {folds.get('k', '?')} identity-independent folds, seed {folds.get('seed', '?')}, "
            f"method `{folds.get('method', '?')}`, stratified by {folds.get('stratified_by', '?')}, "
            f"balanced on {folds.get('balanced_on', 'labelled rows')}; pairs, clips and verified duplicates "
            "never span two folds."
        )
    else:
        lines.append("- **folds**: not assigned.")
    lines.append(
        f"- **publish**: ferdata {__version__}, images: {images} "
        f"({'aligned crops' if images == 'aligned' else 'the original files, unchanged'}); "
        f"removed images {'kept, with label_status removed' if card.include_removed else 'left out'}."
    )
    return lines + [""]


def _terms(card: CardFacts) -> list[str]:
    terms = card.terms
    out = [
        "## Terms of use",
        "",
        terms.get("summary", ""),
        "",
        " ".join(terms.get("text", "").split()) or "(none given)",
        "",
    ]
    if terms.get("url"):
        out += [f"The dataset's own terms: <{terms['url']}>.", ""]
    return out


def _citation(card: CardFacts) -> list[str]:
    citation = card.terms.get("citation", "").strip()
    return ["## Citation", "", "```bibtex", citation, "```", ""] if citation else []


# the prose, in order: each section gives its lines (ending with a blank one), or none
SECTIONS: tuple[Callable[[CardFacts], list[str]], ...] = (
    _intro,
    _load,
    _configs_and_counts,
    _columns,
    _curation,
    _terms,
    _citation,
)
