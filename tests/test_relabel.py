"""The relabelling schemes: every branch of the MSD-E rule, FER+ majority on the real votes, the
workspace entry point and the CLI."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ferdata.cli import app
from ferdata.errors import UsageError, VotesError
from ferdata.relabel import apply_decisions, decide, relabel, summarize
from ferdata.schema import (
    LABELS,
    Manifest,
    new_frame,
    read_manifest,
    validate,
    write_manifest,
)
from ferdata.votes import CATEGORIES, read_votes, tally
from ferdata.workspace import Workspace

FERPLUS_VOTES = Path(__file__).parent / "data" / "ferplus" / "fer2013new.csv"
ORIGINAL = "surprise"


def image(i: int | str, label: str = ORIGINAL, masked: bool | None = False, **extra) -> dict:
    image_id = i if isinstance(i, str) else f"img{i:03d}"
    return dict(
        image_id=image_id,
        dataset="msd-e",
        source=f"MSD-E/{image_id}.jpg",
        sha256="0" * 64,
        subject_id="001",
        label_original=label,
        label=label,
        masked=masked,
        original_path=f"originals/msd-e/{image_id}.jpg",
        width=10,
        height=10,
        **extra,
    )


def write_long(path: Path, votes: dict[str, list[str]]) -> Path:
    """A long-form votes CSV: one row per image × annotator (a1, a2, ...)."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "annotator", "vote"])
        for image_id, cast in votes.items():
            for k, vote in enumerate(cast):
                writer.writerow([image_id, f"a{k + 1}", vote])
    return path


def endorsements(rows: dict[str, dict[str, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{c: counts.get(c, 0) for c in CATEGORIES} for counts in rows.values()],
        index=pd.Index(list(rows), name="image_id"),
    )


# ----------------------------------------------------------------------------- the MSD-E rule, N = 7

U, F = "", "flag"  # an unflagged vote (endorses the original, surprise) and a flag naming no class

# votes of the 7 annotators, outcome under other_rule=total, outcome under per-class.
# An outcome is (action, final label). Thresholds are the paper's: the winner needs
# >= 0.5 × 7 = 3.5 endorsements (so 4), other classes may hold <= 0.25 × 7 = 1.75 (so 1).
MSD_E_CASES = {
    "nobody flags": ([U] * 7, ("original", "surprise"), ("original", "surprise")),
    "4 fear + 1 disgust": (["fear"] * 4 + ["disgust"] + [F] * 2, ("relabelled", "fear"), ("relabelled", "fear")),
    "4 fear + 2 disgust": (["fear"] * 4 + ["disgust"] * 2 + [F], ("removed", None), ("removed", None)),
    "4 fear + 1 disgust + 1 happy": (
        ["fear"] * 4 + ["disgust", "happy", F],
        ("removed", None),  # 2 other endorsements together > 1.75
        ("relabelled", "fear"),  # no single other class holds more than 1
    ),
    "5 fear + 1 disgust + 1 unflagged": (
        ["fear"] * 5 + ["disgust", U],
        ("removed", None),
        ("relabelled", "fear"),
    ),
    "3 fear": (["fear"] * 3 + [F] * 4, ("removed", None), ("removed", None)),
    "4 fear + 3 unflagged": (["fear"] * 4 + [U] * 3, ("removed", None), ("removed", None)),
    "4 fear + 1 unflagged": (["fear"] * 4 + [U] + [F] * 2, ("relabelled", "fear"), ("relabelled", "fear")),
    "7 fear": (["fear"] * 7, ("relabelled", "fear"), ("relabelled", "fear")),
    "1 flag to fear, 6 unflagged": (["fear"] + [U] * 6, ("original", "surprise"), ("original", "surprise")),
    "2 flags to fear, 5 unflagged": (["fear"] * 2 + [U] * 5, ("removed", None), ("removed", None)),
    "3 flags without class, 4 unflagged": ([F] * 3 + [U] * 4, ("original", "surprise"), ("original", "surprise")),
    "all flag without class": ([F] * 7, ("removed", None), ("removed", None)),
    "3 fear + 3 disgust tie": (["fear"] * 3 + ["disgust"] * 3 + [F], ("removed", None), ("removed", None)),
}


@pytest.mark.parametrize("other_rule", ["total", "per-class"])
def test_msd_e_rule_with_seven_annotators(tmp_path: Path, other_rule: str) -> None:
    names = list(MSD_E_CASES)
    frame = new_frame([image(f"case{k}") for k in range(len(names))])
    votes = write_long(tmp_path / "votes.csv", {f"case{k}": MSD_E_CASES[n][0] for k, n in enumerate(names)})
    counted = tally(read_votes(votes), frame)
    audit = decide(frame, counted.endorsements, other_rule=other_rule).set_index("image_id")
    for k, name in enumerate(names):
        expected = MSD_E_CASES[name][1 if other_rule == "total" else 2]
        row = audit.loc[f"case{k}"]
        got = (row["action"], None if pd.isna(row["label"]) else row["label"])
        assert got == expected, f"{name} under {other_rule}: {row['reason']}"
        assert row["n_annotators"] == 7
    assert audit.loc["case0", "reason"] == "not flagged by any of the 7 annotators: label kept"
    assert audit.loc["case0", "n_flagged"] == 0
    assert audit.loc["case1", "fear"] == 4 and audit.loc["case1", "disgust"] == 1 and audit.loc["case1", "unknown"] == 2
    assert audit.loc["case5", "reason"].endswith("fear has 3/7, fewer than the 3.5 needed (min-agree 0.5): removed")
    tie = audit.loc[f"case{names.index('3 fear + 3 disgust tie')}"]
    assert "fear and disgust tie with 3/7 each" in tie["reason"] and pd.isna(tie["winner"])


def test_flag_without_class_endorses_nothing() -> None:
    frame = new_frame([image("a")])
    audit = decide(frame, endorsements({"a": {"fear": 4, "unknown": 2, "not_face": 1}}))
    row = audit.iloc[0]
    assert (row["winner"], row["winner_votes"], row["other_votes"], row["n_flagged"]) == ("fear", 4, 0, 7)
    assert row["action"] == "relabelled"


def test_annotators_who_left_no_vote_endorse_the_original() -> None:
    frame = new_frame([image("sparse4"), image("sparse6")])
    counts = endorsements({"sparse4": {"fear": 4}, "sparse6": {"fear": 6}})
    per_image = decide(frame, counts).set_index("image_id")
    assert per_image.loc["sparse4", "action"] == "relabelled"  # N = 4 voters, all for fear
    fixed = decide(frame, counts, annotators=7).set_index("image_id")
    # 3 silent annotators endorse surprise: 3 > 1.75
    assert fixed.loc["sparse4", "action"] == "removed"
    assert fixed.loc["sparse4", "surprise"] == 0 and fixed.loc["sparse4", "other_votes"] == 3
    assert fixed.loc["sparse6", "action"] == "relabelled"  # 1 silent annotator <= 1.75
    with pytest.raises(VotesError, match="more votes than annotators=5"):
        decide(frame, counts, annotators=5)


@pytest.mark.parametrize(
    ("counts", "kwargs", "action"),
    [
        ({"fear": 4, "disgust": 2, "unknown": 2}, {}, "relabelled"),  # N=8: 4 >= 4 and 2 <= 2
        ({"fear": 4, "disgust": 3, "unknown": 1}, {}, "removed"),  # 3 > 2
        ({"fear": 3, "unknown": 7}, {"min_agree": 0.3}, "relabelled"),  # 3 >= 0.3 × 10 despite float rounding
        ({"fear": 2, "unknown": 8}, {"min_agree": 0.3}, "removed"),
        ({"fear": 5, "sad": 5}, {"min_agree": 0.5, "max_other": 0.5}, "removed"),  # a tie is never a winner
        ({"fear": 5, "sad": 3, "happy": 2}, {"max_other": 0.5}, "relabelled"),  # total 5 <= 5
        ({"fear": 5, "sad": 3, "happy": 2}, {"max_other": 0.2}, "removed"),
        ({"fear": 5, "sad": 2, "happy": 2, "angry": 1}, {"max_other": 0.2, "other_rule": "per-class"}, "relabelled"),
    ],
)
def test_threshold_boundaries(counts: dict, kwargs: dict, action: str) -> None:
    frame = new_frame([image("x")])
    assert decide(frame, endorsements({"x": counts}), **kwargs).iloc[0]["action"] == action


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"min_agree": 1.5}, VotesError),
        ({"max_other": -0.1}, VotesError),
        ({"scheme": "plurality"}, UsageError),
        ({"other_rule": "any"}, UsageError),
        ({"annotators": 0}, VotesError),
    ],
)
def test_bad_parameters(kwargs: dict, error: type) -> None:
    frame = new_frame([image("x")])
    with pytest.raises(error):
        decide(frame, endorsements({"x": {"fear": 7}}), **kwargs)


def test_summary_counts_the_inventory() -> None:
    frame = new_frame(
        [
            image("nm1"),
            image("nm2"),
            image("nm3"),
            image("m1", masked=True),
            image("m2", masked=True),
            image("u1", masked=None),
        ]
    )
    counts = endorsements(
        {
            "nm1": {"surprise": 7},
            "nm2": {"fear": 7},
            "nm3": {"unknown": 7},
            "m1": {"surprise": 6, "sad": 1},
            "m2": {"surprise": 7},
        }
    )
    summary = summarize(decide(frame, counts))
    assert list(summary.index) == ["non-masked", "masked", "unknown", "total"]
    assert summary.loc["non-masked", ["images", "unflagged", "flagged", "relabelled", "removed", "final"]].tolist() == [
        3,
        1,
        2,
        1,
        1,
        2,
    ]
    assert summary.loc["masked", ["unflagged", "flagged", "kept_after_flag", "final", "surprise"]].tolist() == [
        1,
        1,
        1,
        2,
        2,
    ]
    assert summary.loc["unknown", "no_votes"] == 1
    assert summary.loc["total", "fear"] == 1 and summary.loc["total", "surprise"] == 4
    assert summary.loc["total", "final"] == 5


# ----------------------------------------------------------------------------- properties

vote_word = st.sampled_from(["", "flag", "nf", *LABELS])
votes_of_seven = st.lists(vote_word, min_size=7, max_size=7)


@settings(max_examples=200, deadline=None)
@given(votes=st.lists(votes_of_seven, min_size=1, max_size=12), originals=st.data())
def test_default_thresholds_reproduce_the_paper_arithmetic(votes, originals) -> None:
    """N = 7: the winner needs 4 endorsements and the other classes together at most 1."""
    labels = [originals.draw(st.sampled_from(LABELS)) for _ in votes]
    frame = new_frame([image(f"i{k}", label=label) for k, label in enumerate(labels)])
    rows = {}
    for k, (cast, original) in enumerate(zip(votes, labels)):
        counts = dict.fromkeys(CATEGORIES, 0)
        for vote in cast:
            counts[{"": original, "flag": "unknown", "nf": "not_face"}.get(vote, vote)] += 1
        rows[f"i{k}"] = counts
    audit = decide(frame, endorsements(rows)).set_index("image_id")
    for k, (cast, original) in enumerate(zip(votes, labels)):
        row = audit.loc[f"i{k}"]
        endorsed = {label: sum(1 for v in cast if (original if v == "" else v) == label) for label in LABELS}
        best = max(endorsed, key=endorsed.get)
        flagged = any(v not in ("", original) for v in cast)
        if not flagged:
            assert (row["action"], row["label"]) == ("original", original)
        elif endorsed[best] >= 4 and sum(endorsed.values()) - endorsed[best] <= 1:
            assert row["label"] == best
            assert row["action"] == ("original" if best == original else "relabelled")
        else:
            assert row["action"] == "removed" and pd.isna(row["label"])


counts_row = st.fixed_dictionaries({c: st.integers(0, 4) for c in CATEGORIES})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.tuples(st.sampled_from(LABELS), counts_row, st.sampled_from(LABELS)), min_size=1, max_size=10),
    scheme=st.sampled_from(["msd-e", "ferplus-majority"]),
    other_rule=st.sampled_from(["total", "per-class"]),
)
def test_relabelling_is_idempotent_and_removed_rows_have_no_label(rows, scheme, other_rule) -> None:
    frame = new_frame([image(f"i{k}", label=original) for k, (original, _, _) in enumerate(rows)])
    table = endorsements({f"i{k}": counts for k, (_, counts, _) in enumerate(rows)})
    once = apply_decisions(frame, decide(frame, table, scheme=scheme, other_rule=other_rule))
    validate(once)
    assert (once["label"].isna() == (once["label_status"] == "removed")).all()
    twice = apply_decisions(once, decide(once, table, scheme=scheme, other_rule=other_rule))
    pd.testing.assert_frame_equal(once, twice)
    # a manifest whose current labels were edited by hand ends the same: relabelling starts from label_original
    scrambled = frame.assign(label=[stray for _, _, stray in rows], label_status="relabelled")
    pd.testing.assert_frame_equal(
        once, apply_decisions(scrambled, decide(scrambled, table, scheme=scheme, other_rule=other_rule))
    )


# ----------------------------------------------------------------------------- FER+ majority


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({"happy": 6, "neutral": 4}, ("relabelled", "happy")),
        ({"surprise": 9, "fear": 1}, ("original", "surprise")),
        ({"happy": 5, "neutral": 5}, ("removed", None)),  # 5 is not more than half of 10
        (
            {"happy": 4, "neutral": 3, "sad": 1, "fear": 1, "angry": 1},
            ("relabelled", "happy"),
        ),  # 4 of 7 after dropping 1s
        ({"unknown": 6, "happy": 4}, ("removed", None)),
        ({"not_face": 10}, ("removed", None)),
        ({"happy": 1, "sad": 1, "fear": 1, "angry": 1, "neutral": 1}, ("removed", None)),  # nothing left
    ],
)
def test_ferplus_majority_cases(counts: dict, expected: tuple) -> None:
    frame = new_frame([image("x")])
    row = decide(frame, endorsements({"x": counts}), scheme="ferplus-majority").iloc[0]
    assert (row["action"], None if pd.isna(row["label"]) else row["label"]) == expected


FERPLUS_TO_LABEL = ["neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt"]


def direct_ferplus_majority(path: Path) -> list[str | None]:
    """FER+ majority computed row by row, straight from the CSV (the reference for the test)."""
    result = []
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        for row in reader:
            counts = [int(v) for v in row[2:12]]
            counts = [0 if c <= 1 else c for c in counts]
            best = max(range(10), key=lambda k: (counts[k], -k))
            if counts[best] * 2 > sum(counts) and best < 8:
                result.append(FERPLUS_TO_LABEL[best])
            else:
                result.append(None)
    return result


@pytest.fixture(scope="module")
def fer2013_frame() -> pd.DataFrame:
    """All 35,887 FER2013 rows as ingest names them, with made-up original labels."""
    usage = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
    with FERPLUS_VOTES.open(newline="") as fh:
        splits = [usage[row[0]] for row in list(csv.reader(fh))[1:]]
    return new_frame(
        [
            dict(
                image_id=f"fer{i:07d}",
                dataset="fer2013",
                source=f"fer2013.csv#row={i}",
                sha256="0" * 64,
                split=split,
                label_original=LABELS[i % 7],
                label=LABELS[i % 7],
                original_path=f"originals/fer2013/fer{i:07d}.png",
                width=48,
                height=48,
            )
            for i, split in enumerate(splits)
        ]
    )


def test_ferplus_majority_on_the_real_votes(fer2013_frame: pd.DataFrame) -> None:
    counted = tally(read_votes(FERPLUS_VOTES), fer2013_frame)
    assert counted.matched_by == {"csv row": 35887}
    audit = decide(fer2013_frame, counted.endorsements, scheme="ferplus-majority")
    expected = direct_ferplus_majority(FERPLUS_VOTES)
    got = [None if pd.isna(v) else v for v in audit["label"]]
    assert got == expected
    removed = sum(v is None for v in expected)
    assert (audit["action"] == "removed").sum() == removed
    relabelled = sum(1 for v, o in zip(expected, fer2013_frame["label_original"]) if v is not None and v != o)
    assert (audit["action"] == "relabelled").sum() == relabelled
    # the 173 rows FER+ left unnamed hold 10 NF votes: they are removed as "not a face"
    unnamed = audit.loc[audit["not_face"] == 10]
    assert len(unnamed) >= 173 and (unnamed["action"] == "removed").all()


# ----------------------------------------------------------------------------- workspace and CLI


def make_workspace(tmp_path: Path, rows: list[dict], dataset: str = "msd-e") -> Workspace:
    ws = Workspace.resolve(tmp_path / "ws")
    write_manifest(ws.manifest_path(dataset), Manifest(dataset, new_frame(rows), {"ingest": {"source": "test"}}))
    return ws


MSD_ROWS = [
    image(f"{folder}/{subject}_0_a", masked=folder == "MSD-ME", pair_key=f"{subject}_0_a")
    for subject in ("001", "002")
    for folder in ("MSD-E", "MSD-ME")
]
MSD_VOTES = {
    "MSD-E/001_0_a": ["fear"] * 5 + [U] * 2,  # 2 others > 1.75: removed
    "MSD-ME/001_0_a": ["fear"] * 6 + [U],  # relabelled to fear
    "MSD-E/002_0_a": [U] * 7,
    "MSD-ME/002_0_a": ["happy"] + [U] * 6,  # flagged once, surprise confirmed
}


def test_relabel_writes_audit_manifest_and_provenance(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, MSD_ROWS)
    votes = write_long(tmp_path / "votes.csv", MSD_VOTES)
    result = relabel(ws, votes)
    manifest = read_manifest(ws.manifest_path("msd-e"))
    frame = manifest.frame.set_index("image_id")
    assert frame.loc["MSD-E/001_0_a", "label_status"] == "removed" and frame.loc["MSD-E/001_0_a", "label"] is None
    assert (frame.loc["MSD-ME/001_0_a", "label"], frame.loc["MSD-ME/001_0_a", "label_status"]) == ("fear", "relabelled")
    assert frame.loc["MSD-ME/002_0_a", "label_status"] == "original"
    step = manifest.provenance["relabel"]
    assert step["scheme"] == "msd-e" and step["min_agree"] == 0.5 and step["max_other"] == 0.25
    assert step["other_rule"] == "total" and step["votes_sha256"] == hashlib.sha256(votes.read_bytes()).hexdigest()
    assert manifest.provenance["ingest"] == {"source": "test"}
    audit = pd.read_parquet(ws.tables_dir("msd-e") / "relabel_audit.parquet")
    assert len(audit) == 4 and set(audit["action"]) == {"removed", "relabelled", "original"}
    assert (ws.tables_dir("msd-e") / "relabel_audit.csv").is_file()
    assert result.counts["flagged"] == 3 and result.counts["removed"] == 1 and result.counts["kept_after_flag"] == 1
    assert len(result.changes) == 2

    first = ws.manifest_path("msd-e").read_bytes()
    relabel(ws, votes)  # the same votes again: the same manifest
    pd.testing.assert_frame_equal(read_manifest(ws.manifest_path("msd-e")).frame, manifest.frame)
    assert read_manifest(ws.manifest_path("msd-e")).provenance == manifest.provenance
    assert len(first) > 0


def test_relabel_refreshes_in_pe_of_existing_pairs(tmp_path: Path) -> None:
    from ferdata.pairs import make_pairs

    ws = make_workspace(tmp_path, MSD_ROWS)
    assert make_pairs(ws).n_in_pe == 2
    relabel(ws, write_long(tmp_path / "votes.csv", MSD_VOTES))
    frame = read_manifest(ws.manifest_path("msd-e")).frame.set_index("image_id")
    assert not frame.loc["MSD-E/001_0_a", "in_pe"] and not frame.loc["MSD-ME/001_0_a", "in_pe"]
    assert frame.loc["MSD-E/002_0_a", "in_pe"] and frame.loc["MSD-E/002_0_a", "pair_id"] == "002_0_a"


def test_cli_dry_run_writes_nothing(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, MSD_ROWS)
    before = ws.manifest_path("msd-e").read_bytes()
    votes = write_long(tmp_path / "votes.csv", MSD_VOTES)
    run = CliRunner().invoke(app, ["relabel", "-w", str(ws.root), "--votes", str(votes), "--dry-run"])
    assert run.exit_code == 0, run.output
    assert (
        "2 images would change" in run.output
        and "MSD-ME/001_0_a: surprise (original) → fear (relabelled)" in run.output
    )
    assert ws.manifest_path("msd-e").read_bytes() == before
    assert not ws.tables_dir("msd-e").exists()


def test_cli_per_class_rule_and_votes_in_parquet(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, [image("a"), image("b")])
    long = pd.DataFrame(
        [("a", f"v{k}", vote) for k, vote in enumerate(["fear"] * 4 + ["disgust", "happy", "flag"])]
        + [("b", f"v{k}", "") for k in range(7)],
        columns=["image_id", "volunteer", "new_label"],
    )
    long.to_parquet(tmp_path / "votes.parquet")
    run = CliRunner().invoke(
        app, ["relabel", "-w", str(ws.root), "--votes", str(tmp_path / "votes.parquet"), "--other-rule", "per-class"]
    )
    assert run.exit_code == 0, run.output
    manifest = read_manifest(ws.manifest_path("msd-e"))
    assert manifest.frame.set_index("image_id").loc["a", "label"] == "fear"
    assert manifest.provenance["relabel"]["other_rule"] == "per-class"


def bad_votes(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """name -> (votes file text, words the error must contain)."""
    return {
        "unknown image": ("image,annotator,vote\nimg000,a1,fear\nghost1,a1,fear\nghost2,a2,\n", "ghost1, ghost2"),
        "unknown label": ("image,annotator,vote\nimg000,a1,fearful-ish\nimg000,a2,hapy\n", "'fearful-ish', 'hapy'"),
        "duplicate": ("image,annotator,vote\nimg000,a1,fear\nimg000,a1,sad\n", "img000 × a1"),
        "empty": ("", "is empty"),
        "header only": ("image,annotator,vote\n", "holds no votes"),
    }


@pytest.mark.parametrize("case", ["unknown image", "unknown label", "duplicate", "empty", "header only"])
def test_cli_bad_votes_exit_1_and_leave_the_manifest(tmp_path: Path, case: str) -> None:
    ws = make_workspace(tmp_path, [image(0), image(1)])
    before = ws.manifest_path("msd-e").read_bytes()
    text, words = bad_votes(tmp_path)[case]
    votes = tmp_path / "votes.csv"
    votes.write_text(text)
    run = CliRunner().invoke(app, ["relabel", "-w", str(ws.root), "--votes", str(votes)])
    assert run.exit_code == 1
    assert words in run.stderr and "Traceback" not in run.output
    assert ws.manifest_path("msd-e").read_bytes() == before


def test_cli_threshold_outside_range(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, [image(0)])
    votes = write_long(tmp_path / "votes.csv", {"img000": ["fear"] * 7})
    run = CliRunner().invoke(app, ["relabel", "-w", str(ws.root), "--votes", str(votes), "--min-agree", "1.2"])
    assert run.exit_code == 1 and "--min-agree 1.2 is outside [0, 1]" in run.stderr


def test_skip_unmatched_ignores_foreign_votes(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, [image(0)])
    votes = write_long(tmp_path / "votes.csv", {"img000": ["fear"] * 7, "elsewhere": ["sad"] * 7})
    result = relabel(ws, votes, skip_unmatched=True)
    assert result.skipped == ["elsewhere"] and result.counts["relabelled"] == 1


def test_ferplus_votes_kept_in_the_workspace_by_ingest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [
        {**image(f"fer{r:07d}", label="neutral", masked=None), "dataset": "ferplus", "source": f"fer2013.csv#row={r}", "split": "train"}
        for r in (58, 59, 60)
    ]
    ws = make_workspace(tmp_path, rows, dataset="ferplus")
    kept = ws.tables_dir("ferplus") / "fer2013new.csv"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(FERPLUS_VOTES.read_bytes())
    monkeypatch.chdir(tmp_path)  # the relative path below exists only inside the workspace
    result = relabel(ws, "tables/ferplus/fer2013new.csv", scheme="ferplus-majority", skip_unmatched=True)
    frame = read_manifest(ws.manifest_path("ferplus")).frame.set_index("image_id")
    # row 58: neutral 8, sadness 2 -> neutral kept; row 59: 10 NF -> removed; row 60: neutral 8, surprise 2
    assert frame["label_status"].to_dict() == {"fer0000058": "original", "fer0000059": "removed", "fer0000060": "original"}
    step = read_manifest(ws.manifest_path("ferplus")).provenance["relabel"]
    assert step == {**step, "scheme": "ferplus-majority", "votes_file": "tables/ferplus/fer2013new.csv", "votes_form": "ferplus"}
    assert "min_agree" not in step and len(result.skipped) == 35884
