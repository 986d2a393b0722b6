from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from ferdata import schema
from ferdata.errors import SchemaError


def row(i: int, **kw) -> dict:
    base = dict(
        image_id=f"img{i}", dataset="msd-e", source=f"MSD-E/{i}.jpg", sha256=f"{i:064x}",
        label_original="happy", label="happy", original_path=f"originals/msd-e/{i}.jpg", width=10, height=12,
    )
    base.update(kw)
    return base


def test_columns_follow_the_contract():
    contract = [
        "image_id", "dataset", "source", "sha256", "split", "subject_id", "clip_id", "label_original", "label",
        "label_status", "masked", "occlusion", "pair_id", "in_pe", "fold", "original_path", "width", "height",
        "face_status", "det_score", "n_faces", "bbox", "landmarks", "aligned_path",
    ]
    assert set(contract) <= set(schema.COLUMN_NAMES)
    assert str(schema.column("bbox").arrow_type) == "fixed_size_list<item: double>[4]"
    assert schema.column("occlusion").vocabulary == schema.OCCLUSION_TAGS
    assert schema.BASIC_LABELS == ("surprise", "fear", "disgust", "happy", "sad", "angry", "neutral")


def test_round_trip_keeps_values_types_and_provenance(tmp_path):
    frame = schema.new_frame([
        row(0, masked=True, occlusion=["mask"], bbox=[1, 2, 3, 4], landmarks=list(range(10)), fold=3, n_faces=1, det_score=0.9),
        row(1, label=None, label_status="removed", extra_note="kept as an extra column"),
    ])
    path = tmp_path / "m.parquet"
    schema.write_manifest(path, schema.Manifest("msd-e", frame, {"ingest": {"archive": "a.zip"}}))
    back = schema.read_manifest(path)
    assert back.dataset == "msd-e" and back.provenance == {"ingest": {"archive": "a.zip"}}
    first, second = back.frame.iloc[0], back.frame.iloc[1]
    assert first["masked"] is True or first["masked"] == True  # noqa: E712
    assert first["occlusion"] == ["mask"] and first["bbox"] == [1.0, 2.0, 3.0, 4.0]
    assert first["fold"] == 3 and back.frame["fold"].dtype == "Int64"
    assert pd.isna(second["masked"]) and second["label"] is None and second["occlusion"] == []
    assert second["extra_note"] == "kept as an extra column"
    assert pq.read_schema(path).field("image_id").type == "string"


@pytest.mark.parametrize(
    "bad, message",
    [
        ([row(0), row(0)], "duplicate image_id"),
        ([row(0, label_original="joy")], "label_original holds values outside"),
        ([row(0, label=None)], "label must be empty exactly when"),
        ([row(0, label_status="removed")], "label must be empty exactly when"),
        ([row(0, occlusion=["scarf"])], "occlusion holds tags outside"),
        ([row(0, bbox=[1, 2, 3])], "bbox must hold 4 numbers"),
        ([row(0, sha256=None)], "sha256 is empty"),
    ],
)
def test_validation_names_the_problem_and_the_rows(bad, message):
    with pytest.raises(SchemaError, match=message) as info:
        schema.validate(schema.new_frame(bad))
    assert "img0" in str(info.value)
    with pytest.raises(SchemaError, match=message) as built:  # the same rules, built as Arrow (a first ingest)
        schema.new_table(bad)
    assert str(built.value) == str(info.value)


def test_a_table_built_from_rows_is_the_frames_table():
    rows = [
        row(0, masked=True, occlusion=["mask"], bbox=[1, 2, 3, 4], landmarks=list(range(10)), fold=3, n_faces=1),
        row(1, label=None, label_status="removed", det_score=0.5, subject_id="s1", in_pe=True),
        row(2, split="test", tag_origin=["source"], masked_origin="source", width=2**40),
    ]
    table = schema.new_table(rows)
    assert table.schema == schema.ARROW_SCHEMA
    assert table.equals(schema.to_arrow(schema.new_frame(rows)))


@pytest.mark.parametrize(
    "bad, column",
    [(row(0, width=1.5), "width"), (row(0, masked="yes"), "masked"), (row(0, occlusion="mask"), "occlusion"),
     (row(0, image_id=7), "image_id")],
)
def test_a_value_of_the_wrong_type_names_its_column(bad, column):
    with pytest.raises(SchemaError, match=f"invalid manifest: {column} holds a value that is not"):
        schema.new_table([bad])


def test_a_manifest_read_from_disk_makes_its_frame_when_asked(tmp_path):
    path = tmp_path / "m.parquet"
    schema.write_manifest(path, schema.Manifest("msd-e", schema.new_frame([row(0), row(1)])))
    read = schema.read_manifest(path)
    assert len(read) == 2 and "rows=2" in repr(read)
    assert read.table().equals(pq.read_table(path).replace_schema_metadata(None))
    frame = read.frame
    frame.loc[0, "label"] = "sad"  # the frame is the manifest from now on: changes show in what is written
    assert read.table().column("label").to_pylist() == ["sad", "happy"]
    read.frame = frame.iloc[:1]
    assert len(read) == 1


def test_a_manifest_of_older_types_is_read_through_a_frame(tmp_path):
    import pyarrow as pa

    table = schema.to_arrow(schema.new_frame([row(0, fold=2)]))
    table = table.set_column(table.column_names.index("fold"), "fold", table.column("fold").cast(pa.int32()))
    pq.write_table(table, tmp_path / "old.parquet")
    read = schema.read_manifest(tmp_path / "old.parquet")
    assert read.frame["fold"].tolist() == [2] and read.table().schema == schema.ARROW_SCHEMA
    broken = table.set_column(table.column_names.index("label"), "label", pa.array(["joy"]))
    pq.write_table(broken, tmp_path / "bad.parquet")
    with pytest.raises(SchemaError, match="label holds values outside"):
        schema.read_manifest(tmp_path / "bad.parquet")


def test_a_failed_write_leaves_the_previous_manifest_intact(tmp_path):
    path = tmp_path / "m.parquet"
    schema.write_manifest(path, schema.Manifest("msd-e", schema.new_frame([row(0)])))
    before = path.read_bytes()
    with pytest.raises(SchemaError):
        schema.write_manifest(path, schema.Manifest("msd-e", schema.new_frame([row(0), row(0)])))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.parquet"]  # no temporary file left behind


def test_a_truncated_manifest_is_reported_not_read(tmp_path):
    path = tmp_path / "m.parquet"
    schema.write_manifest(path, schema.Manifest("msd-e", schema.new_frame([row(0)])))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(SchemaError, match="cannot read manifest"):
        schema.read_manifest(path)


def test_docs_schema_page_matches_the_schema():
    from pathlib import Path

    page = (Path(__file__).parents[1] / "docs" / "schema.md").read_text()
    assert schema.markdown_table() in page


def test_written_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    path = tmp_path / "m.parquet"
    schema.write_manifest(path, schema.Manifest("msd-e", schema.new_frame([row(0)])))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's owner-only 0600
