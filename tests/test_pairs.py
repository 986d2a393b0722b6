"""Pairing non-masked images with their masked twins, and the MSD-PE subset."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ferdata.cli import app
from ferdata.pairs import (
    AMBIGUOUS,
    BOTH_REMOVED,
    LABEL_MISMATCH,
    MASKED_UNKNOWN,
    NO_KEY,
    ONE_SIDE_REMOVED,
    TWIN_MISSING,
    make_pairs,
    pair_images,
)
from ferdata.schema import (
    LABELS,
    Manifest,
    new_frame,
    read_manifest,
    validate,
    write_manifest,
)
from ferdata.workspace import Workspace

MSD_E_ORDER = ("surprise", "fear", "disgust", "happy", "sad", "angry", "neutral")


def msd_image(
    subject: str, label_index: int, masked: bool | None, suffix: str = "a", label: str | None | bool = True, **extra
) -> dict:
    """One image of a made-up MSD-E tree: MSD-E/<subject>_<label>_<suffix> or MSD-ME/..."""
    key = f"{subject}_{label_index}_{suffix}"
    folder = "MSD-ME" if masked else "MSD-E"
    original = MSD_E_ORDER[label_index]
    final = original if label is True else label
    row = dict(
        image_id=f"{folder}/{key}",
        dataset="msd-e",
        source=f"{folder}/{key}.jpg",
        sha256="0" * 64,
        subject_id=subject,
        label_original=original,
        label=final,
        label_status="removed" if final is None else ("original" if final == original else "relabelled"),
        masked=masked,
        pair_key=key,
        original_path=f"originals/msd-e/{folder}/{key}.jpg",
        width=10,
        height=10,
    )
    return {**row, **extra}


def made_up_msd_e() -> pd.DataFrame:
    rows = []
    for subject in ("012", "013"):
        for k in range(7):
            rows += [msd_image(subject, k, False), msd_image(subject, k, True)]
    rows += [
        msd_image("014", 0, False),
        msd_image("014", 0, True, label="fear"),  # label mismatch
        msd_image("014", 1, False, label=None),
        msd_image("014", 1, True),  # one side removed
        msd_image("014", 2, False, label=None),
        msd_image("014", 2, True, label=None),  # both removed
        msd_image("014", 3, False, label="sad"),
        msd_image("014", 3, True, label="sad"),  # both relabelled alike
        msd_image("015", 4, False),  # its masked twin is missing
        msd_image("016", 5, True),  # its non-masked twin is missing
    ]
    return new_frame(rows)


def test_pairs_on_a_made_up_msd_e_tree() -> None:
    pairing = pair_images(made_up_msd_e())
    validate(pairing.frame)
    assert pairing.n_pairs == 18 and pairing.n_in_pe == 15
    assert pairing.removed_by_reason() == {LABEL_MISMATCH: 1, ONE_SIDE_REMOVED: 1, BOTH_REMOVED: 1}
    assert pairing.unpaired_by_reason() == {TWIN_MISSING: 2}
    assert sorted(pairing.unpaired["image_id"]) == ["MSD-E/015_4_a", "MSD-ME/016_5_a"]
    frame = pairing.frame.set_index("image_id")
    assert frame.loc["MSD-E/012_3_a", "pair_id"] == frame.loc["MSD-ME/012_3_a", "pair_id"] == "012_3_a"
    assert frame.loc["MSD-E/012_3_a", "in_pe"] and frame.loc["MSD-ME/012_3_a", "in_pe"]
    assert frame.loc["MSD-E/014_3_a", "in_pe"]  # both sides relabelled to sad: the labels agree
    assert not frame.loc["MSD-E/014_0_a", "in_pe"] and frame.loc["MSD-E/014_0_a", "pair_id"] == "014_0_a"
    assert frame.loc["MSD-E/015_4_a", "pair_id"] is None and not frame.loc["MSD-E/015_4_a", "in_pe"]
    pe = pairing.pe_per_label()
    assert pe == {"surprise": 2, "fear": 2, "disgust": 2, "happy": 2, "sad": 3, "angry": 2, "neutral": 2}
    row = pairing.pairs.set_index("pair_id").loc["014_0_a"]
    assert (row["nonmasked_id"], row["masked_id"], row["label_nonmasked"], row["label_masked"]) == (
        "MSD-E/014_0_a",
        "MSD-ME/014_0_a",
        "surprise",
        "fear",
    )


def test_pair_ids_do_not_depend_on_row_order() -> None:
    frame = made_up_msd_e()
    first = pair_images(frame)
    shuffled = pair_images(frame.sample(frac=1.0, random_state=3).reset_index(drop=True))
    ids = lambda p: p.frame.set_index("image_id").sort_index()[["pair_id", "in_pe"]]  # noqa: E731
    pd.testing.assert_frame_equal(ids(first), ids(shuffled))
    pd.testing.assert_frame_equal(first.pairs, shuffled.pairs)
    pd.testing.assert_frame_equal(pair_images(first.frame).frame, first.frame)  # idempotent


def test_images_that_cannot_pair() -> None:
    frame = new_frame(
        [
            msd_image("020", 0, False),
            msd_image("020", 0, True),
            msd_image("020", 0, True, pair_key="020_0_a", image_id="MSD-ME/020_0_a-copy"),
            msd_image("021", 0, None),
            msd_image("021", 0, True),
            {**msd_image("022", 0, False), "pair_key": None, "subject_id": None},
        ]
    )
    pairing = pair_images(frame)
    assert pairing.n_pairs == 0
    reasons = pairing.unpaired.set_index("image_id")["reason"].to_dict()
    assert reasons == {
        "MSD-E/020_0_a": AMBIGUOUS,
        "MSD-ME/020_0_a": AMBIGUOUS,
        "MSD-ME/020_0_a-copy": AMBIGUOUS,
        "MSD-E/021_0_a": MASKED_UNKNOWN,
        "MSD-ME/021_0_a": TWIN_MISSING,
        "MSD-E/022_0_a": NO_KEY,
    }


def test_fallback_pairs_by_subject_label_and_take() -> None:
    def row(image_id: str, masked: bool, take: int) -> dict:
        return {**msd_image("030", 3, masked), "image_id": image_id, "pair_key": None, "take": take}

    frame = new_frame([row("p/a", False, 1), row("p/b", True, 1), row("p/c", False, 2), row("p/d", True, 2)])
    pairing = pair_images(frame)
    assert sorted(pairing.pairs["pair_id"]) == ["030|happy|1", "030|happy|2"]
    by_id = pairing.frame.set_index("image_id")["pair_id"].to_dict()
    assert by_id == {"p/a": "030|happy|1", "p/b": "030|happy|1", "p/c": "030|happy|2", "p/d": "030|happy|2"}
    # without the take column the four images are one ambiguous group
    assert pair_images(frame.drop(columns="take")).unpaired_by_reason() == {AMBIGUOUS: 4}


label_or_removed = st.one_of(st.none(), st.sampled_from(LABELS[:7]))


@settings(max_examples=60, deadline=None)
@given(
    images=st.lists(
        st.tuples(
            st.sampled_from(["101", "102", "103"]),
            st.integers(0, 6),
            st.sampled_from([False, True, None]),
            label_or_removed,
        ),
        min_size=1,
        max_size=30,
        unique_by=lambda t: (t[0], t[1], t[2]),
    )
)
def test_pair_invariants(images) -> None:
    frame = new_frame([msd_image(s, k, m, label=lab) for s, k, m, lab in images])
    pairing = pair_images(frame)
    out = pairing.frame
    paired = out[out["pair_id"].notna()]
    for _, group in paired.groupby("pair_id"):
        assert len(group) == 2 and sorted(group["masked"].tolist()) == [False, True]
        labels = group["label"].tolist()
        assert bool(group["in_pe"].iloc[0]) == (None not in labels and labels[0] == labels[1])
        assert group["in_pe"].nunique() == 1
    assert not out.loc[out["pair_id"].isna(), "in_pe"].any()
    assert len(pairing.unpaired) + 2 * pairing.n_pairs == len(frame)
    pd.testing.assert_frame_equal(pair_images(out).frame, out)


# ----------------------------------------------------------------------------- workspace and CLI


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    ws = Workspace.resolve(tmp_path / "ws")
    write_manifest(ws.manifest_path("msd-e"), Manifest("msd-e", made_up_msd_e(), {}))
    return ws


def test_make_pairs_writes_tables_and_manifest(workspace: Workspace) -> None:
    result = make_pairs(workspace)
    assert (result.n_images, result.n_pairs, result.n_in_pe) == (38, 18, 15)
    manifest = read_manifest(workspace.manifest_path("msd-e"))
    assert manifest.frame["in_pe"].sum() == 30 and manifest.frame["pair_id"].notna().sum() == 36
    assert manifest.provenance["pairs"]["in_pe"] == 15
    assert manifest.provenance["pairs"]["removed"] == {LABEL_MISMATCH: 1, ONE_SIDE_REMOVED: 1, BOTH_REMOVED: 1}
    table = pd.read_parquet(workspace.tables_dir("msd-e") / "pairs.parquet")
    assert len(table) == 18 and table["in_pe"].sum() == 15
    unpaired = pd.read_csv(workspace.tables_dir("msd-e") / "unpaired.csv")
    assert set(unpaired["reason"]) == {TWIN_MISSING}


def test_cli_pairs(workspace: Workspace) -> None:
    run = CliRunner().invoke(app, ["pairs", "-w", str(workspace.root)])
    assert run.exit_code == 0, run.output
    assert "unpaired MSD-E/015_4_a: twin missing" in run.output
    assert read_manifest(workspace.manifest_path("msd-e")).frame["in_pe"].sum() == 30


def test_cli_pairs_without_a_manifest(tmp_path: Path) -> None:
    run = CliRunner().invoke(app, ["pairs", "-w", str(tmp_path)])
    assert run.exit_code == 1 and "holds no manifest" in run.stderr
