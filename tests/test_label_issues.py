"""ferdata label-issues: cleanlab on a run's out-of-fold probabilities, and the label_issue tag."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_train import SIZE, build_workspace, write_published
from typer.testing import CliRunner

from ferdata.cli import app
from ferdata.errors import UsageError
from ferdata.labelissues import TAG, label_issues, rank_label_issues
from ferdata.schema import BASIC_LABELS
from ferdata.train.loop import TrainConfig, train_baseline

PLANTED = "003_0_n"  # shows surprise, labelled happy


def oof_frame(n_per_class: int = 10, planted: int = 5) -> pd.DataFrame:
    """Confident, mostly right predictions; row ``planted`` says surprise but is predicted happy."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(7), n_per_class)
    probs = rng.dirichlet(np.ones(7), size=len(labels)) * 0.2
    probs[np.arange(len(labels)), labels] += 0.8
    probs[planted] = 0.01
    probs[planted, BASIC_LABELS.index("happy")] = 0.94
    frame = pd.DataFrame({
        "image_id": [f"img{i:03d}" for i in range(len(labels))],
        "fold": np.arange(len(labels)) % 2,
        "label": np.asarray(BASIC_LABELS, dtype=object)[labels],
        "masked": pd.array([False] * len(labels), dtype="boolean"),
    })
    for i, c in enumerate(BASIC_LABELS):
        frame[f"p_{c}"] = probs[:, i]
    frame["predicted"] = np.asarray(BASIC_LABELS, dtype=object)[probs.argmax(1)]
    return frame


def test_the_planted_label_ranks_first():
    issues = rank_label_issues(oof_frame())
    assert issues.iloc[0]["image_id"] == "img005"
    assert issues.iloc[0]["label"] == "surprise" and issues.iloc[0]["predicted"] == "happy"
    assert issues.iloc[0]["label_quality"] == pytest.approx(0.01 / sum([0.94] + [0.01] * 6))
    assert list(issues["rank"]) == list(range(1, len(issues) + 1))
    assert issues["label_quality"].is_monotonic_increasing


def test_filter_choice_is_checked():
    with pytest.raises(UsageError, match="filter_by="):
        rank_label_issues(oof_frame(), filter_by="nonsense")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Non-masked faces, 8 subjects, 2 folds, with one planted wrong label; a few epochs of CE."""
    root = tmp_path_factory.mktemp("issues")
    ws = build_workspace(root / "ws", subjects=8, masked_too=False, wrong={PLANTED: "happy"})
    config = TrainConfig(subset="nm", epochs=6, batch_size=8, image_size=SIZE, lr_backbone=1e-3, milestones=(),
                         augment=False, device="cpu", tsne=False)
    train_baseline(ws, root / "run", config)
    return ws, root / "run", root


def test_the_reported_epoch_is_the_last_whatever_the_validation_log_says(trained):
    _, run, _ = trained
    log = pd.read_csv(run / "epochs.csv")
    oof = pd.read_parquet(run / "oof.parquet")
    assert sorted(log["epoch"].unique()) == [1, 2, 3, 4, 5, 6]
    for fold, part in oof.groupby("fold"):
        right = (part["label"] == part["predicted"]).mean()
        assert log[(log["round"] == fold) & (log["epoch"] == 6)]["val_accuracy"].item() == pytest.approx(right)


def test_label_issues_ranks_the_planted_error_high_and_tags_it(trained):
    ws, run, _ = trained
    result = label_issues(run, tag=True)
    assert result.issues.iloc[0]["image_id"] == PLANTED
    planted = result.issues.set_index("image_id").loc[PLANTED]
    assert planted["label"] == "happy" and planted["predicted"] == "surprise"
    frame = ws.load().frame.set_index("image_id")
    tagged = frame.index[frame["occlusion"].map(lambda tags: TAG in tags)]
    assert set(tagged) == set(result.issues["image_id"]) and result.tagged == len(tagged)
    assert frame.loc[PLANTED, "label"] == "happy"  # tagging never relabels
    assert pd.read_csv(run / "label_issues.csv")["image_id"].tolist() == result.issues["image_id"].tolist()
    again = label_issues(run, tag=True)
    assert again.tagged == 0
    assert ws.load().provenance["label_issues"]["flagged"] == len(result.issues)


def test_cli_label_issues_and_a_published_run_needs_a_workspace_to_tag(trained):
    ws, run, root = trained
    runner = CliRunner()
    shown = runner.invoke(app, ["label-issues", str(run), "--show", "3"])
    assert shown.exit_code == 0, shown.output
    assert PLANTED in shown.output
    published = write_published(ws, root / "published")
    other = root / "published-run"
    train_baseline(published, other, TrainConfig(subset="nm", epochs=1, batch_size=16, image_size=SIZE, device="cpu", tsne=False))
    refused = runner.invoke(app, ["label-issues", str(other), "--tag"])
    assert refused.exit_code == 1 and "-w" in refused.output
    tagged = runner.invoke(app, ["label-issues", str(other), "--tag", "-w", str(ws.root)])
    assert tagged.exit_code == 0, tagged.output


def test_label_issue_tags_carry_their_origin_and_go_without_force(trained, tmp_path):
    """label-issues --tag -> tag list counts them under label_issues, not source -> the reviewer's
    list of images whose label is fine removes their tags with tag remove --ids @FILE, no --force."""
    import json

    from ferdata.tags import LABEL_ISSUES, SOURCE, tag_origins

    ws, run, _ = trained
    runner = CliRunner()
    w = ["-w", str(ws.root)]
    tagged = runner.invoke(app, ["label-issues", str(run), "--tag"])
    assert tagged.exit_code == 0, tagged.output
    frame = ws.load().frame
    flagged = frame.loc[frame["occlusion"].map(lambda tags: TAG in tags), "image_id"].tolist()  # earlier runs' too
    assert set(pd.read_csv(run / "label_issues.csv")["image_id"]) <= set(flagged)
    listed = runner.invoke(app, ["tag", "list", *w, "--json"])
    assert listed.exit_code == 0, listed.output
    row = next(r for r in json.loads(listed.stdout)["counts"] if r["tag"] == TAG)
    assert row[LABEL_ISSUES] == row["total"] == len(flagged) and row[SOURCE] == 0
    assert all(m.get(TAG) == LABEL_ISSUES for m in tag_origins(frame) if TAG in m)

    ok = tmp_path / "ok.txt"
    ok.write_text("\n".join(flagged) + "\n")
    removed = runner.invoke(app, ["tag", "remove", *w, "-t", TAG, "--ids", f"@{ok}"])
    assert removed.exit_code == 0, removed.output
    assert f"{len(flagged):,} of {len(flagged):,} selected" in removed.output and "--force" not in removed.output
    assert not ws.load().frame["occlusion"].map(lambda tags: TAG in tags).any()
