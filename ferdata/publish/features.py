"""The published columns: each one's Arrow type, its ``datasets`` feature and its card entry.

Every feature is derived from the manifest schema (:mod:`ferdata.schema`): a schema column keeps
its Arrow type and its doc, a column over the label vocabulary becomes a ``ClassLabel`` over the
canonical names, a list becomes a ``Sequence``; images become an ``Image`` (the file's bytes,
embedded as they are on disk). The same description goes into each shard's ``huggingface``
schema metadata (where ``datasets`` reads it) and into the card's ``dataset_info``.

Why :func:`schema_feature` lives here and not in ``schema.py``: the schema module owns the
manifest (names, types, vocabularies, docs) and nothing in it is restated here; what this module
adds is the Hugging Face spelling of those facts (``ClassLabel``/``Sequence``/``Value`` JSON, the
card's ``dtype`` entries, the ``Image`` struct) and the choice of class names per dataset. That
spelling is publish's business: it changes with ``datasets``, not with the manifest, and keeping
it here leaves the schema free of any third-party format. The derivation runs one way, schema
to features, so a column added to ``manifests/schema.toml`` is published with the right type
without an edit here.

Which columns each config publishes is decided here too (:func:`row_features`, :func:`pe_features`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa

from ..schema import BASIC_LABELS, LABELS, Column, column

# Manifest columns published beside the image and the label, in this order (mix, nm, m).
IMAGE_ROW_COLUMNS = (
    "image_id",
    "subject_id",
    "clip_id",
    "masked",
    "occlusion",
    "fold",
    "pair_id",
    "in_pe",
    "label_original",
    "label_status",
    "det_score",
    "sha256",
)
# Columns of a pe row besides the two images and the label; each pair shares them.
PAIR_ROW_COLUMNS = ("pair_id", "subject_id", "fold")
# Left out when null in every published row (clip_id outside video datasets, fold before folds).
OPTIONAL_COLUMNS = ("subject_id", "clip_id", "fold", "pair_id", "det_score")

# Private columns of the planned rows (never published as such): each row's image file, and the
# masked side's file and image_id in a pe row.
IMAGE_PATH = "_image"
MASKED_IMAGE_PATH = "_image_masked"
MASKED_IMAGE_ID = "_image_id_masked"

# an Image feature's storage: the file's bytes, no path (the bytes are the image)
IMAGE_TYPE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])


@dataclass(frozen=True)
class Feature:
    """One published column: its Arrow type, its ``datasets`` feature (JSON) and its card entry."""

    name: str
    arrow_type: pa.DataType
    hf: dict[str, Any]
    card: dict[str, Any]
    source: str  # manifest column (or, for images, the column holding the file path)
    doc: str
    kind: str  # as the card's column list names it
    image: bool = False
    class_names: tuple[str, ...] | None = None


def image_feature(name: str, path_column: str, doc: str) -> Feature:
    """An ``Image`` column whose bytes are read from the files named in ``path_column``."""
    return Feature(
        name, IMAGE_TYPE, {"_type": "Image"}, {"name": name, "dtype": "image"}, path_column, doc, "Image", image=True
    )


def schema_feature(
    col: Column,
    *,
    name: str | None = None,
    source: str | None = None,
    doc: str | None = None,
    class_names: Sequence[str] = BASIC_LABELS,
) -> Feature:
    """The published form of a manifest column: labels become a ClassLabel, the rest keep their type.

    ``name``/``source``/``doc`` let one schema column appear under another name (the pe config's
    ``image_id_masked``). Lists use the ``Sequence`` spelling, which every ``datasets`` release
    since 2.x reads.
    """
    name, source, doc = name or col.name, source or col.name, doc or col.doc
    if col.vocabulary == LABELS:
        names = tuple(class_names)
        return Feature(
            name,
            pa.int64(),
            {"names": list(names), "_type": "ClassLabel"},
            {"name": name, "dtype": {"class_label": {"names": {str(i): n for i, n in enumerate(names)}}}},
            source,
            doc,
            "ClassLabel",
            class_names=names,
        )
    if col.is_list:
        inner = col.type_name.removeprefix("list<").split(">")[0]  # the schema's names are the Hub's dtypes
        hf: dict[str, Any] = {"feature": {"dtype": inner, "_type": "Value"}, "_type": "Sequence"}
        card: dict[str, Any] = {"name": name, "sequence": inner}
        if col.list_size:
            hf["length"] = card["length"] = col.list_size
        return Feature(name, col.arrow_type, hf, card, source, doc, col.type_name)
    return Feature(
        name,
        col.arrow_type,
        {"dtype": col.type_name, "_type": "Value"},
        {"name": name, "dtype": col.type_name},
        source,
        doc,
        col.type_name,
    )


def arrow_schema(features: Sequence[Feature]) -> pa.Schema:
    """The shards' schema, with the ``huggingface`` metadata ``datasets`` reads its features from."""
    info = {"info": {"features": {f.name: f.hf for f in features}}}
    return pa.schema(
        [pa.field(f.name, f.arrow_type) for f in features],
        metadata={b"huggingface": json.dumps(info, sort_keys=False).encode()},
    )


def class_names_for(frame: pd.DataFrame) -> tuple[str, ...]:
    """The canonical 7 basic labels, or all 8 when the data holds contempt."""
    has_contempt = (frame["label"] == "contempt").any() or (frame["label_original"] == "contempt").any()
    return LABELS if has_contempt else BASIC_LABELS


def published_docs(*, images: str = "aligned", include_removed: bool = False) -> dict[str, str]:
    """Column descriptions where the published column says less (or more) than the manifest's:
    removed rows are left out unless ``include_removed``, ``in_pe`` speaks of the published
    ``pe`` config, and the embedded image is a crop, not the file ``sha256`` was taken of."""
    docs = {
        "label": (
            "The label after relabelling (the source's where relabelling did not change it)"
            + (
                "; null for images removed by relabelling (`label_status` removed)."
                if include_removed
                else "; never null: images removed by relabelling are not published."
            )
        ),
        "label_status": (
            "`original` (the source's label), `relabelled`"
            + (" or `removed` (no label)." if include_removed else "; removed images are not published.")
        ),
        "in_pe": (
            "True where this image and its twin form a row of the `pe` config: the pair passed the MSD-PE "
            "rule (the same final label on both sides) and both sides are published."
        ),
        "occlusion": (
            "Tags of the image: occlusions such as `mask`, `sunglasses`, `glasses`, `hand`, `hair`; "
            "`synthetic_mask` where ferdata drew the mask; `label_issue` where `ferdata label-issues` "
            "flagged the label for review."
        ),
    }
    if images == "aligned":
        docs["sha256"] = (
            "Hex SHA-256 of the original image's bytes (of the decoded pixels for CSV sources), "
            "not of the embedded aligned crop."
        )
    return docs


def row_features(
    class_names: tuple[str, ...], present: set[str], *, images: str = "aligned", include_removed: bool = False
) -> tuple[Feature, ...]:
    """The columns of mix, nm and m: the image, the label, then the ``present`` manifest columns."""
    docs = published_docs(images=images, include_removed=include_removed)
    what = "the aligned face crop" if images == "aligned" else "the original image"
    feats = [
        image_feature("image", IMAGE_PATH, f"{what} (file bytes embedded)"),
        schema_feature(column("label"), class_names=class_names, doc=docs["label"]),
    ]
    for name in IMAGE_ROW_COLUMNS:
        if name in present:
            feats.append(schema_feature(column(name), class_names=class_names, doc=docs.get(name)))
    return tuple(feats)


def pe_features(class_names: tuple[str, ...], present: set[str], *, images: str = "aligned") -> tuple[Feature, ...]:
    """The columns of pe: both images, the shared label, the ``present`` pair columns, both ids."""
    image_id = column("image_id")
    what = "face crop" if images == "aligned" else "original image"
    return (
        image_feature("image_nonmasked", IMAGE_PATH, f"the non-masked {what} (file bytes embedded)"),
        image_feature("image_masked", MASKED_IMAGE_PATH, f"the masked {what} (file bytes embedded)"),
        schema_feature(column("label"), class_names=class_names, doc="The label both images of the pair share."),
        *(schema_feature(column(n)) for n in PAIR_ROW_COLUMNS if n in present),
        schema_feature(image_id, name="image_id_nonmasked", doc="`image_id` of the non-masked image."),
        schema_feature(image_id, name="image_id_masked", source=MASKED_IMAGE_ID, doc="`image_id` of the masked image."),
    )
