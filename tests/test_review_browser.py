"""The review page in a real browser: Debian's Chromium, driven by Playwright, on the demo workspace.

It does what the issue's "done when" says a person can do: open the page that `ferdata review`
serves, filter to `label_issue`, vote on ten images with the keyboard (undo and the arrows
included), then `ferdata relabel --votes WS/votes/` applies the MSD-E rule to those votes.

Chromium comes from Debian (`apt-get install chromium`, as `.ci/run` does); Playwright only drives
it (no browser download). Without them the test is skipped on a developer's machine and fails in
CI. Set FERDATA_REVIEW_SCREENSHOT=docs/review.png to refresh the screenshot in the docs.
"""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from ferdata.cli import app as cli
from ferdata.workspace import Workspace

pytest.importorskip("starlette")
from test_review_api import start_server, stop_server  # noqa: E402

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:
    expect = sync_playwright = None

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CLASSES = ["surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"]  # the page's keys 1..7


def browser_or_skip():
    problem = None if sync_playwright else "Playwright is not installed: pip install -e '.[test]'"
    if not CHROMIUM.exists():
        problem = "Debian's Chromium is not installed: apt-get install chromium"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory) -> Workspace:
    """The demo's sample through the demo's own steps (ingest with alignment, pairs, folds), and
    the label-issues step's tags on twelve images (the real step needs a training run)."""
    from ferdata.archives import Secret
    from ferdata.demo import DEMO_PASSWORD, build_sample
    from ferdata.folds import make_folds
    from ferdata.ingest import ingest
    from ferdata.labelissues import tag_label_issues
    from ferdata.pairs import make_pairs

    out = tmp_path_factory.mktemp("review-demo")
    sample = build_sample(out / "delivery")
    ws = Workspace.resolve(out / "workspace")
    ingest(ws, sample.archive, dataset="msd-e", password=lambda: Secret(DEMO_PASSWORD), align_options={"device": "cpu"})
    with ws.lock("pairs"):
        make_pairs(ws, dataset="msd-e")
    with ws.lock("folds"):
        make_folds(ws, 2, dataset="msd-e", seed=0)
    frame = ws.load("msd-e").frame
    flagged = frame.loc[frame["face_status"] == "aligned", "image_id"].iloc[::8].head(12).tolist()
    with ws.lock("label-issues"):
        tag_label_issues(ws, flagged, dataset="msd-e")
    # the ranked table label-issues writes, kept in the workspace: lowest label quality first
    issues = pd.DataFrame({"rank": range(1, 13), "image_id": flagged, "label_quality": [0.02 * k for k in range(1, 13)]})
    issues.to_csv(ws.tables_dir("msd-e") / "label_issues.csv", index=False)
    return ws


def other_class(label: str, step: int = 1) -> str:
    return CLASSES[(CLASSES.index(label) + step) % len(CLASSES)]


def key_of(label: str) -> str:
    return str(CLASSES.index(label) + 1)


def votes_in(path: Path) -> list[tuple[str, str, str]]:
    if not path.exists():
        return []
    return [tuple(r) for r in list(csv.reader(io.StringIO(path.read_text())))[1:]]


def test_filter_vote_with_the_keyboard_and_relabel(demo_workspace, tmp_path):
    browser_or_skip()
    ws = demo_workspace
    manifest = ws.load("msd-e").frame.set_index("image_id")
    labels, masked = manifest["label_original"], manifest["masked"]
    proc, url = start_server(ws, "--annotator", "alice")
    errors: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("pageerror", lambda e: errors.append(str(e)))
            # the one error status expected: 409 while the lock is held
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "409" not in m.text else None)
            page.goto(url)
            page.wait_for_selector("body[data-ready]")
            assert page.locator(".tile").count() == 112

            page.select_option('select[name="tag"]', "label_issue")
            expect(page.locator(".tile")).to_have_count(12)
            page.select_option('select[name="order"]', "label_quality")
            expect(page.locator("#count")).to_have_text("12 shown by these filters")
            expect(page.locator(".tile")).to_have_count(12)
            ids = [tile.get_attribute("data-id") for tile in page.locator(".tile").all()]
            assert len(ids) == 12 and set(ids) <= set(labels.index)
            assert page.locator(".tile.current").get_attribute("data-id") == ids[0]

            def press(*keys: str) -> None:
                for key in keys:
                    page.keyboard.press(key)

            # ten decisions, each a key; every vote moves the cursor on by one
            plan: list[tuple[str, str]] = []
            for n, image_id in enumerate(ids[:10]):
                label = labels[image_id]
                if n == 1:
                    press(key_of(label))  # its own class: the label is confirmed
                    plan.append((image_id, label))
                elif n == 2:
                    press("x")  # not a face
                    plan.append((image_id, "not_face"))
                elif n == 3:
                    press("f")  # flagged, no class named
                    plan.append((image_id, "flag"))
                elif n == 4:
                    press(key_of(other_class(label, 1)), "u")  # a slip, undone: back on this image
                    press(key_of(other_class(label, 2)))
                    plan.append((image_id, other_class(label, 2)))
                elif n == 6:
                    press("ArrowRight", "ArrowLeft", key_of(other_class(label, 3)))  # look ahead, come back
                    plan.append((image_id, other_class(label, 3)))
                else:
                    press(key_of(other_class(label)))
                    plan.append((image_id, other_class(label)))
            page.wait_for_selector('body[data-pending="0"]')
            assert page.locator(".tile.current").get_attribute("data-id") == ids[10]

            # the mask key on a non-masked image, first while another command holds the lock: a
            # clear message and nothing written; then again, saved with origin review
            target = next(i for i in [*range(10, 12), *range(9, -1, -1)] if not masked[ids[i]])
            press(*(["ArrowRight"] * (target - 10) if target >= 10 else ["ArrowLeft"] * (10 - target)))
            expect(page.locator(".tile.current")).to_have_attribute("data-id", ids[target])
            before = ws.manifest_path("msd-e").read_bytes()
            with ws.lock("align"):
                press("m")
                page.wait_for_selector('body[data-pending="0"]')
                message = page.locator("#banner").text_content()
            assert "Not saved" in message and f"in use by pid {os.getpid()} (align)" in message
            assert ws.manifest_path("msd-e").read_bytes() == before
            press("m")  # the lock is free again
            page.wait_for_selector('body[data-pending="0"]')
            expect(page.locator("#banner")).to_have_text(f"mask added to {ids[target]}")
            press(*(["ArrowLeft"] * (target - 9) if target >= 9 else ["ArrowRight"] * (9 - target)))
            expect(page.locator("#detail h2")).to_have_text(ids[9])
            expect(page.locator("#detail .votes li")).to_have_text(f"alice: {plan[9][1]}")
            for picture in page.locator("#detail img").all():
                expect(picture).to_have_js_property("complete", True)
            expect(page.locator("#detail .frame img")).to_have_js_property("naturalWidth", 256)
            shot = tmp_path / "review.png"
            page.screenshot(path=str(shot))
            browser.close()
    finally:
        out = stop_server(proc)
    assert not errors, errors
    assert "ferdata relabel" in out

    # the votes file: one row per decided image, in the order decided, the undone slip gone
    assert votes_in(ws.root / "votes" / "alice.csv") == [(i, "alice", v) for i, v in plan]
    tagged = ws.load("msd-e").frame.set_index("image_id").loc[ids[target]]
    assert "mask" in tagged["occlusion"] and dict(zip(tagged["occlusion"], tagged["tag_origin"]))["mask"] == "review"

    image = Image.open(shot)
    assert image.size == (1280, 800)
    if target := os.environ.get("FERDATA_REVIEW_SCREENSHOT"):
        image.convert("RGB").quantize(colors=256, dither=Image.Dither.FLOYDSTEINBERG).save(Path(__file__).parents[1] / target, optimize=True)

    result = CliRunner().invoke(cli, ["relabel", "-w", str(ws.root), "--votes", f"{ws.root / 'votes'}/"])
    assert result.exit_code == 0, result.output
    after = ws.load("msd-e").frame.set_index("image_id")
    for image_id, vote in plan:
        if vote == labels[image_id]:
            assert (after.at[image_id, "label"], after.at[image_id, "label_status"]) == (vote, "original")
        elif vote in ("not_face", "flag"):  # a flag naming no class endorses nothing: removed
            assert after.at[image_id, "label_status"] == "removed" and after.at[image_id, "label"] is None
        else:
            assert (after.at[image_id, "label"], after.at[image_id, "label_status"]) == (vote, "relabelled")
    untouched = after.drop(index=[i for i, _ in plan])
    assert (untouched["label"] == untouched["label_original"]).all()
    audit = pd.read_csv(ws.tables_dir("msd-e") / "relabel_audit.csv").set_index("image_id")
    assert audit.loc[plan[2][0], "reason"].endswith("no annotator named a class: removed")
