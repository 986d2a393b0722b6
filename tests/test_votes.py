"""Reading vote files (long, wide, FER+ matrix; CSV, Parquet) and matching them to a manifest."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ferdata.errors import VotesError
from ferdata.schema import new_frame
from ferdata.votes import CATEGORIES, read_votes, tally

FERPLUS_VOTES = Path(__file__).parent / "data" / "ferplus" / "fer2013new.csv"


def msd_frame() -> pd.DataFrame:
    rows = []
    for key, label in (("012_3_a", "happy"), ("012_4_a", "sad")):
        for folder, masked in (("MSD-E", False), ("MSD-ME", True)):
            rows.append(
                dict(
                    image_id=f"{folder}/{key}",
                    dataset="msd-e",
                    source=f"msd/{folder}/{key}.jpg",
                    sha256="0" * 64,
                    subject_id="012",
                    label_original=label,
                    label=label,
                    masked=masked,
                    pair_key=key,
                    original_path=f"originals/msd-e/{folder}/{key}.jpg",
                    width=10,
                    height=10,
                )
            )
    rows.append({**rows[0], "image_id": "solo", "source": "extra/solo_1.png", "pair_key": None})
    return new_frame(rows)


def counts_of(endorsements: pd.DataFrame, image_id: str) -> dict[str, int]:
    return {c: int(v) for c, v in endorsements.loc[image_id].items() if v}


def test_long_csv_vote_words(tmp_path: Path) -> None:
    path = tmp_path / "votes.csv"
    path.write_text(
        "image,annotator,vote\n"
        "MSD-E/012_3_a,ann1,\n"
        "MSD-E/012_3_a,ann2,OK\n"
        "MSD-E/012_3_a,ann3, Sadness \n"
        "MSD-E/012_3_a,ann4,none\n"
        "MSD-E/012_3_a,ann5,NF\n"
        "MSD-E/012_3_a,ann6,flag\n"
        "MSD-E/012_3_a,ann7,happy\n"
    )
    raw = read_votes(path)
    assert raw.form == "long" and len(raw.table) == 7
    counted = tally(raw, msd_frame())
    # unflagged votes and a vote naming the original both endorse happy (label_original)
    assert counts_of(counted.endorsements, "MSD-E/012_3_a") == {"happy": 3, "sad": 1, "unknown": 2, "not_face": 1}
    assert list(counted.endorsements.index) == ["MSD-E/012_3_a"] and counted.n_votes == 7


def test_wide_csv_and_parquet_read_the_same(tmp_path: Path) -> None:
    wide = pd.DataFrame(
        {
            "file": ["MSD-E/012_3_a", "MSD-ME/012_4_a"],
            "v1": ["surprise", ""],
            "v2": ["surprise", "sad"],
            "v3": ["", "flag"],
        }
    )
    wide.to_csv(tmp_path / "wide.csv", index=False)
    wide.to_parquet(tmp_path / "wide.parquet")
    frame = msd_frame()
    for name in ("wide.csv", "wide.parquet"):
        raw = read_votes(tmp_path / name)
        assert raw.form == "wide" and raw.annotator_columns == ("v1", "v2", "v3")
        table = tally(raw, frame).endorsements
        assert counts_of(table, "MSD-E/012_3_a") == {"surprise": 2, "happy": 1}
        assert counts_of(table, "MSD-ME/012_4_a") == {"sad": 2, "unknown": 1}


def test_wide_file_with_an_image_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("image,v1,v2\nMSD-E/012_3_a,,\nMSD-E/012_3_a,sad,\n")
    with pytest.raises(VotesError, match="several rows .*MSD-E/012_3_a"):
        read_votes(path)


def test_matching_by_id_source_file_name_and_stem(tmp_path: Path) -> None:
    path = tmp_path / "votes.csv"
    path.write_text(
        "image,annotator,vote\n"
        "MSD-E/012_3_a,a,sad\n"  # image_id
        "msd/MSD-ME/012_3_a.jpg,a,sad\n"  # full source
        "solo_1.png,a,sad\n"  # file name, unique in the manifest
    )
    counted = tally(read_votes(path), msd_frame())
    assert counted.matched_by == {"image_id": 1, "source": 1, "file name": 1}
    assert sorted(counted.endorsements.index) == ["MSD-E/012_3_a", "MSD-ME/012_3_a", "solo"]
    path.write_text("image,annotator,vote\nsolo_1,a,sad\n")
    assert tally(read_votes(path), msd_frame()).matched_by == {"file stem": 1}


def test_a_file_name_shared_by_twins_is_ambiguous(tmp_path: Path) -> None:
    path = tmp_path / "votes.csv"
    path.write_text("image,annotator,vote\n012_3_a.jpg,a,sad\n")
    with pytest.raises(
        VotesError, match=r"ambiguously: 012_3_a.jpg \(msd/MSD-E/012_3_a.jpg or msd/MSD-ME/012_3_a.jpg\)"
    ):
        tally(read_votes(path), msd_frame())


def test_the_same_annotator_twice_through_two_names_is_a_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "votes.csv"
    path.write_text("image,annotator,vote\nMSD-E/012_3_a,a,sad\nmsd/MSD-E/012_3_a.jpg,a,\n")
    with pytest.raises(VotesError, match="MSD-E/012_3_a × a"):
        tally(read_votes(path), msd_frame())


def test_unknown_images_are_listed_and_can_be_skipped(tmp_path: Path) -> None:
    path = tmp_path / "votes.csv"
    lines = ["image,annotator,vote", "MSD-E/012_3_a,a,sad"] + [f"ghost{k},a,sad" for k in range(8)]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        VotesError, match="8 images that are not in the manifest: ghost0, ghost1, ghost2, ghost3, ghost4 and 3 more"
    ):
        tally(read_votes(path), msd_frame())
    counted = tally(read_votes(path), msd_frame(), skip_unmatched=True)
    assert len(counted.skipped) == 8 and list(counted.endorsements.index) == ["MSD-E/012_3_a"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("image,annotator,vote\n", "holds no votes"),
        ("image\nMSD-E/012_3_a\n", "no annotator columns"),
        # wrong columns are refused, never read as image names
        ("vote,annotator,picture\nhappy,a1,MSD-E/012_3_a\n", r"has no image column \(its columns: 'vote', 'annotator', 'picture'\)"),
        ("photo,who,answer\nMSD-E/012_3_a,a1,happy\n", "has no image column"),
        ("image,annotator,votes\nMSD-E/012_3_a,a1,happy\n", "has image and annotator columns but no vote column"),
        ("image,vote\nMSD-E/012_3_a,happy\n", "has image and vote columns but no annotator column"),
        ("Usage,Image name,neutral,happiness,surprise,sadness\nTraining,fer0000000.png,10,0,0,0\n",
         "looks like FER\\+'s fer2013new.csv but lacks the columns anger, disgust, fear, contempt, unknown, nf"),
    ],
)
def test_unusable_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "votes.csv"
    path.write_text(text)
    with pytest.raises(VotesError, match=message):
        read_votes(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VotesError, match="does not exist"):
        read_votes(tmp_path / "nope.csv")


# ----------------------------------------------------------------------------- the FER+ matrix


def fer_frame(rows: list[int], source: str = "fer2013.csv#row={row}", split: str | None = "train") -> pd.DataFrame:
    return new_frame(
        [
            dict(
                image_id=f"fer{r:07d}",
                dataset="fer2013",
                source=source.format(row=r, name=f"fer{r:07d}.png"),
                sha256="0" * 64,
                split=split,
                label_original="neutral",
                label="neutral",
                original_path=f"originals/fer2013/{r}.png",
                width=48,
                height=48,
            )
            for r in rows
        ]
    )


def test_ferplus_rows_match_by_position_not_by_name() -> None:
    raw = read_votes(FERPLUS_VOTES)
    assert raw.form == "ferplus" and len(raw.table) == 35887
    table = tally(raw, fer_frame([58, 59, 60]), skip_unmatched=True).endorsements
    # row 59 is an image FER+ dropped (no name, 10 NF votes); row 60 carries the name fer0000059.png
    assert counts_of(table, "fer0000058") == {"neutral": 8, "sad": 2}
    assert counts_of(table, "fer0000059") == {"not_face": 10}
    assert counts_of(table, "fer0000060") == {"neutral": 8, "surprise": 2}


def test_ferplus_names_match_ferplus_png_folders() -> None:
    frame = fer_frame([59, 6953], source="data/FER2013Train/{name}")
    counted = tally(read_votes(FERPLUS_VOTES), frame, skip_unmatched=True)
    assert counted.matched_by == {"file name": 2}
    assert counts_of(counted.endorsements, "fer0000059") == {"neutral": 8, "surprise": 2}
    assert counts_of(counted.endorsements, "fer0006953") == {"neutral": 9, "fear": 1}


def test_ferplus_rows_not_in_the_manifest_are_an_error() -> None:
    with pytest.raises(VotesError, match="35884 images that are not in the manifest: row 0, row 1"):
        tally(read_votes(FERPLUS_VOTES), fer_frame([58, 59, 60]))


def test_ferplus_usage_must_agree_with_the_split() -> None:
    with pytest.raises(VotesError, match=r"not row-aligned .*row 5 \(training vs test\)"):
        tally(read_votes(FERPLUS_VOTES), fer_frame([5], split="test"), skip_unmatched=True)


def test_ferplus_votes_cannot_align_with_several_csvs() -> None:
    frame = pd.concat([fer_frame([0]), fer_frame([1], source="train.csv#row={row}")], ignore_index=True)
    with pytest.raises(VotesError, match="several CSV files"):
        tally(read_votes(FERPLUS_VOTES), frame, skip_unmatched=True)


def test_ferplus_counts_must_be_whole_numbers(tmp_path: Path) -> None:
    path = tmp_path / "fer2013new.csv"
    header = FERPLUS_VOTES.read_text().splitlines()[0]
    path.write_text(
        header + "\nTraining,fer0000000.png,4,0,0,1,3,2,0,0,0,0\nTraining,fer0000001.png,x,0,0,1,3,2,0,0,0,-1\n"
    )
    with pytest.raises(VotesError, match="not whole numbers ≥ 0 on rows 1"):
        read_votes(path)


def test_categories_are_the_labels_then_unknown_and_not_face() -> None:
    assert CATEGORIES[-2:] == ("unknown", "not_face") and "contempt" in CATEGORIES


def test_wrong_columns_are_refused_even_when_unmatched_images_would_be_skipped(tmp_path: Path) -> None:
    """Read as image names, the vote column would match nothing and be skipped: a silent no-op."""
    path = tmp_path / "votes.csv"
    path.write_text("vote,annotator,picture\nhappy,a1,MSD-E/012_3_a\nsad,a2,MSD-E/012_3_a\n")
    with pytest.raises(VotesError, match="no image column"):
        tally(read_votes(path), msd_frame(), skip_unmatched=True)


def test_a_huge_image_name_is_shown_cut(tmp_path: Path) -> None:
    path = tmp_path / "votes.csv"
    path.write_text("image,annotator,vote\n" + "x" * 100_000 + ",a,sad\n")
    with pytest.raises(VotesError, match="not in the manifest") as caught:
        tally(read_votes(path), msd_frame())
    assert len(str(caught.value)) < 500
