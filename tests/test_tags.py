"""Occlusion tags: add/remove/import/list, origins kept apart, round trips through the manifest."""

from __future__ import annotations

import pandas as pd
import pytest
from builders import msd_e_tree
from typer.testing import CliRunner

from ferdata.cli import app
from ferdata.errors import TagError, UsageError
from ferdata.ingest import ingest
from ferdata.schema import new_frame
from ferdata.tags import (
    AUTO,
    MASKED_ORIGIN_COLUMN,
    SOURCE,
    TAG_ORIGIN_COLUMN,
    USER,
    add_tag,
    apply_auto_mask,
    import_tags,
    list_name_candidates,
    read_occlusion_list,
    remove_tag,
    select,
    tag_counts,
    tag_images,
    tag_origins,
)


def frame(n: int = 4, masked=None, occlusion=None) -> pd.DataFrame:
    rows = []
    for i in range(n):
        rows.append({
            "image_id": f"img{i}", "dataset": "imagefolder", "source": f"train/happy/img{i}.jpg", "sha256": "0" * 64,
            "label_original": "happy", "label": "happy", "original_path": f"originals/img{i}.jpg", "width": 10, "height": 10,
            "split": "train" if i % 2 == 0 else "test", "masked": None if masked is None else masked[i],
            "occlusion": [] if occlusion is None else occlusion[i],
        })
    return new_frame(rows)


def everything(f: pd.DataFrame) -> pd.Series:
    return pd.Series(True, index=f.index)


@pytest.fixture
def msd_ws(tmp_path, ws):
    """MSD-E with 2 subjects x 7 labels x (MSD-E, MSD-ME): 28 rows, 14 with the source tag mask."""
    src = msd_e_tree(tmp_path / "src", subjects=2)
    ingest(src, ws, dataset="msd-e", align=False)
    return ws


def test_unknown_tag_is_a_clear_error():
    with pytest.raises(TagError, match="unknown tag 'scarf': use one of mask, sunglasses"):
        add_tag(frame(), "scarf", everything(frame()))


def test_where_and_ids_select_exact_rows():
    f = frame(4)
    assert select(f, "split == 'train'").tolist() == [True, False, True, False]
    assert select(f, None, ["img1", "img3.jpg"]).tolist() == [False, True, False, True]  # id or file name
    assert select(f, "split == 'train'", ["img0", "img1"]).tolist() == [True, False, False, False]
    assert not select(f).any()
    with pytest.raises(TagError, match="cannot evaluate where='nonexistent_column == 3'"):
        select(f, "nonexistent_column == 3")
    with pytest.raises(TagError, match="true or false per image"):
        select(f, "width + 1")
    with pytest.raises(TagError, match="not in the manifest"):
        select(f, None, ["img9"])


def test_add_then_remove_records_origin_and_mask_sets_masked():
    f = frame(3, masked=[None, False, None])
    change = add_tag(f, "mask", select(f, "image_id != 'img2'"))
    assert change.changed == 2
    out = change.frame
    assert out["occlusion"].tolist() == [["mask"], ["mask"], []]
    assert out[TAG_ORIGIN_COLUMN].tolist() == [[USER], [USER], []]
    # masked fills only where unknown; the false one (from the source) stays false
    assert out["masked"].iloc[0] == True and out["masked"].iloc[1] == False and pd.isna(out["masked"].iloc[2])
    assert out[MASKED_ORIGIN_COLUMN].tolist() == [USER, SOURCE, None]
    removed = remove_tag(out, "mask", everything(out))
    assert removed.changed == 2
    assert removed.frame["occlusion"].tolist() == [[], [], []]
    assert pd.isna(removed.frame["masked"].iloc[0])  # set by the tag, so back to unknown
    assert removed.frame["masked"].iloc[1] == False


def test_source_tags_survive_remove_without_force():
    f = frame(2, masked=[True, True], occlusion=[["mask"], ["mask", "glasses"]])  # no tag_origin: from the source
    change = remove_tag(f, "mask", everything(f))
    assert (change.changed, change.kept_source) == (0, 2)
    assert change.frame["occlusion"].tolist() == [["mask"], ["mask", "glasses"]]
    forced = remove_tag(f, "mask", everything(f), force=True)
    assert forced.frame["occlusion"].tolist() == [[], ["glasses"]]
    assert forced.frame["masked"].tolist() == [True, True]  # masked from the source is not a tag's to undo


def test_auto_mask_never_overwrites_source_or_user_and_replaces_its_own():
    f = frame(5, masked=[False, True, None, None, None], occlusion=[[], ["mask"], [], [], []])
    f = add_tag(f, "hand", select(f, "image_id == 'img3'")).frame
    scores = pd.Series([0.9, 0.1, 0.8, 0.2, None], index=f.index)
    out = apply_auto_mask(f, scores, 0.5).frame
    origins = tag_origins(out)
    assert origins[0] == {"mask": AUTO}  # tag added ...
    assert out["masked"].iloc[0] == False
    assert origins[1] == {"mask": SOURCE} and out["masked"].iloc[1] == True
    assert origins[2] == {"mask": AUTO} and out["masked"].iloc[2] == True
    assert out[MASKED_ORIGIN_COLUMN].tolist() == [SOURCE, SOURCE, AUTO, AUTO, None]
    assert origins[3] == {"hand": USER} and out["masked"].iloc[3] == False
    assert pd.isna(out["mask_score"].iloc[4]) and pd.isna(out["masked"].iloc[4])
    # a second run with a stricter threshold undoes only auto's own decisions
    again = apply_auto_mask(out, scores, 0.85).frame
    assert tag_origins(again)[2] == {} and again["masked"].iloc[2] == False
    assert tag_origins(again)[0] == {"mask": AUTO} and tag_origins(again)[1] == {"mask": SOURCE}
    with pytest.raises(UsageError):
        apply_auto_mask(out, scores, 1.5)


def test_tags_round_trip_through_the_manifest(msd_ws):
    result = tag_images(msd_ws, "glasses", where="subject_id == '001'")
    assert (result.selected, result.changed) == (14, 14)
    kept = tag_images(msd_ws, "mask", remove=True, where="subject_id == '001'")
    assert (kept.changed, kept.kept_source) == (0, 7)  # MSD-ME's mask tags came from the source
    m = msd_ws.load("msd-e")
    by_id = dict(zip(m.frame["image_id"], m.frame["occlusion"]))
    origin = dict(zip(m.frame["image_id"], m.frame[TAG_ORIGIN_COLUMN].map(list)))
    assert by_id["MSD-ME/001_3_dslr"] == ["mask", "glasses"]
    assert origin["MSD-ME/001_3_dslr"] == [SOURCE, USER]
    assert by_id["MSD-E/002_3_dslr"] == []
    counts = tag_counts(m.frame).set_index("tag")
    assert counts.loc["mask", SOURCE] == 14 and counts.loc["glasses", USER] == 14
    assert counts.loc["masked=true", "total"] == 14 and counts.loc["masked=unknown", "total"] == 0
    assert [op["action"] for op in m.provenance["tag"]["operations"]] == ["add", "remove"]


def test_import_csv_and_occlusion_list(msd_ws, tmp_path):
    csv = tmp_path / "tags.csv"
    csv.write_text("image,tag\nMSD-E/001_0_dslr,hand\n001_1_dslr.jpg,hair\nnot_there.jpg,hat\n")
    result = import_tags(msd_ws, csv)
    # 001_1_dslr.jpg is the file name of two images (MSD-E and MSD-ME): ambiguous, so unmatched
    assert result.changed == 1 and sorted(result.unmatched) == ["001_1_dslr.jpg", "not_there.jpg"]
    bad = tmp_path / "bad.csv"
    bad.write_text("image,tag\nMSD-E/001_0_dslr,scarf\n")
    with pytest.raises(TagError, match="line 2 'scarf'"):
        import_tags(msd_ws, bad)
    listing = tmp_path / "occlusion_list.txt"
    listing.write_text("MSD-E/002_4_dslr_aligned 3 4\n5_MSD-E/002_5_dslr.png 8 0\nMSD-E/002_6_dslr 6 1\nMSD-E/002_6_dslr 6 1\n")
    result = import_tags(msd_ws, listing, list_tag="other")
    assert result.changed == 2 and result.unmatched == ["5_MSD-E/002_5_dslr.png"]  # the label prefix is FER+'s only
    frame_ = msd_ws.load("msd-e").frame.set_index("image_id")
    assert frame_.at["MSD-E/002_4_dslr", "occlusion"] == ["other"]
    assert frame_.at["MSD-E/001_0_dslr", "occlusion"] == ["hand"]
    with pytest.raises(TagError, match="none of the 1 images"):
        (tmp_path / "other.txt").write_text("test_0003_aligned 3 4\n")
        import_tags(msd_ws, tmp_path / "other.txt", list_tag="other")


def test_occlusion_list_names_match_rafdb_and_ferplus_files(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("test_0003_aligned 3 4\n1_fer0034656.png 8 0\n")
    assert read_occlusion_list(path) == ["test_0003_aligned", "1_fer0034656.png"]
    assert "test_0003" in list_name_candidates("test_0003_aligned")
    assert "fer0034656" in list_name_candidates("1_fer0034656.png")
    (tmp_path / "broken.txt").write_text("a b c\n")
    with pytest.raises(TagError, match="lines 1"):
        read_occlusion_list(tmp_path / "broken.txt")


def test_cli_add_list_and_errors(msd_ws):
    runner = CliRunner()
    w = ["-w", str(msd_ws.root)]
    done = runner.invoke(app, ["tag", "add", *w, "--tag", "hat", "--where", "label_original == 'happy'"])
    assert done.exit_code == 0, done.output
    frame_ = msd_ws.load("msd-e").frame
    assert frame_.loc[frame_["occlusion"].map(lambda t: "hat" in t), "label_original"].tolist() == ["happy"] * 4
    listed = runner.invoke(app, ["tag", "list", *w, "--json"])
    assert listed.exit_code == 0 and '"hat"' in listed.output
    unknown = runner.invoke(app, ["tag", "add", *w, "--tag", "scarf", "--where", "index == index"])
    assert unknown.exit_code == 1 and "unknown tag 'scarf'" in unknown.output
    nothing = runner.invoke(app, ["tag", "add", *w, "--tag", "hat"])
    assert nothing.exit_code == 1 and "choose the images: --where EXPRESSION, --ids FILE, or both" in nothing.output
    # the library names its arguments (where=...); the command names its flags
    with pytest.raises(UsageError, match="where=EXPRESSION, ids_file=FILE"):
        tag_images(msd_ws, "hat")
    bad = runner.invoke(app, ["tag", "remove", *w, "--tag", "hat", "--where", "nonexistent == 1"])
    assert bad.exit_code == 1 and "cannot evaluate --where 'nonexistent == 1'" in bad.output and "where=" not in bad.output
