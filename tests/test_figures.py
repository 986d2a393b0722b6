"""Figures as PNG, PDF or SVG: the trainer's confusion matrices and t-SNE, and the contact sheet."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_train import build_workspace
from typer.testing import CliRunner

from ferdata import figures
from ferdata.cli import app
from ferdata.errors import UsageError
from ferdata.train.report import figure_title, plot_confusion, plot_tsne
from ferdata.vision.contact import render_contact_sheet, write_contact_sheet

CLASSES = ["surprise", "happy", "sad"]
MATRIX = np.array([[5, 1, 0], [2, 4, 0], [0, 1, 3]])  # 16 images, 12 right


def signature(path) -> str:
    """What the file is, by its first bytes."""
    head = path.read_bytes()[:512]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"%PDF-"):
        return "pdf"
    if b"<svg" in head:
        return "svg"
    return "unknown"


def round_predictions(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = np.asarray(CLASSES, dtype=object)[np.arange(n) % 3]
    predicted = np.where(rng.random(n) < 0.7, labels, np.asarray(CLASSES, dtype=object)[(np.arange(n) + 1) % 3])
    return pd.DataFrame({"label": labels, "predicted": predicted, "masked": pd.array(np.arange(n) % 2 == 1, dtype="boolean")})


def rounds(k: int = 3, n: int = 24) -> list:
    out = []
    for fold in range(k):
        part = round_predictions(n, fold)
        codes = part["label"].map(CLASSES.index).to_numpy()
        features = np.random.default_rng(fold).normal(size=(n, 16)) + codes[:, None] * 3.0
        out.append((f"fold {fold}", features, part))
    return out


@pytest.mark.parametrize("fmt", figures.FORMATS)
def test_each_format_writes_its_own_kind_of_file_the_same_every_time(tmp_path, fmt):
    title = figure_title("ResNet-18 baseline on Mix", "all folds", MATRIX)
    first = plot_confusion(MATRIX, CLASSES, tmp_path / f"a.{fmt}", title, figure_format=fmt)
    again = plot_confusion(MATRIX, CLASSES, tmp_path / f"b.{fmt}", title, figure_format=fmt)
    assert signature(first) == fmt
    assert first.read_bytes() == again.read_bytes()  # no date, no random ids
    tsne = plot_tsne(rounds(2), CLASSES, tmp_path / f"tsne.{fmt}", "t-SNE", figure_format=fmt)
    assert signature(tsne) == fmt


SVG = "{http://www.w3.org/2000/svg}"


def assert_valid(path, fmt: str) -> None:
    """``path`` is a whole, readable file of its format: a PNG that decodes, a PDF whose
    cross-reference table is where its trailer says, an SVG that parses as XML."""
    data = path.read_bytes()
    if fmt == "png":
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) > 100
            image.load()  # every pixel decodes
    elif fmt == "pdf":
        import re

        assert data.startswith(b"%PDF-1.") and data.rstrip().endswith(b"%%EOF")
        offset = int(re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", data).group(1))
        assert data[offset:offset + 4] == b"xref"  # the trailer points at the table: not truncated
        assert len(re.findall(rb"/Type\s*/Page\b", data)) == 1
    else:
        from xml.etree import ElementTree

        root = ElementTree.fromstring(data)
        assert root.tag == f"{SVG}svg" and float(root.get("width").removesuffix("pt")) > 100


def svg_texts(path) -> list[str]:
    """The SVG's ``<text>`` elements: the words a vector editor edits and a search finds."""
    from xml.etree import ElementTree

    root = ElementTree.parse(path).getroot()
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


@pytest.mark.parametrize("fmt", figures.FORMATS)
def test_every_figure_is_a_valid_file_of_its_format(tmp_path, sheet_ws, fmt):
    title = figure_title("ResNet-18 baseline on Mix", "all folds, out-of-fold", MATRIX)
    assert_valid(plot_confusion(MATRIX, CLASSES, tmp_path / f"confusion.{fmt}", title, figure_format=fmt), fmt)
    assert_valid(plot_tsne(rounds(2), CLASSES, tmp_path / f"tsne.{fmt}", "t-SNE", figure_format=fmt), fmt)
    sheet = tmp_path / f"sheet.{fmt}"
    write_contact_sheet(sheet_ws, sheet_ws.load(), sheet, per_row=4, label_ids=True)
    assert_valid(sheet, fmt)


def test_svg_text_is_text_not_glyph_outlines(tmp_path):
    title = figure_title("ResNet-18 baseline on Mix", "masked images", MATRIX)
    path = plot_confusion(MATRIX, CLASSES, tmp_path / "c.svg", title, figure_format="svg")
    texts = svg_texts(path)
    assert "masked images: n = 16, accuracy 75.0%" in texts and "ResNet-18 baseline on Mix" in texts
    assert set(CLASSES) <= set(texts)  # the axis labels too
    assert "DejaVuSans-" not in path.read_text()  # no glyphs drawn as paths (svg.fonttype "path")
    tsne = plot_tsne(rounds(2), CLASSES, tmp_path / "tsne.svg", "t-SNE", figure_format="svg")
    assert {"fold 0: n = 24", "fold 1: n = 24"} <= {t.split(",")[0] for t in svg_texts(tsne)}
    assert "masked" in svg_texts(tsne)  # the legends' entries


def test_dpi_sets_a_pngs_pixels(tmp_path):
    small = plot_confusion(MATRIX, CLASSES, tmp_path / "small.png", "t", dpi=50)
    large = plot_confusion(MATRIX, CLASSES, tmp_path / "large.png", "t", dpi=200)
    assert Image.open(large).size[0] == pytest.approx(4 * Image.open(small).size[0], abs=4)
    with pytest.raises(UsageError, match="figure_format='jpeg' is not one of png, pdf, svg"):
        plot_confusion(MATRIX, CLASSES, tmp_path / "x.jpeg", "t", figure_format="jpeg")
    with pytest.raises(UsageError, match="dpi=5 must be between"):
        plot_confusion(MATRIX, CLASSES, tmp_path / "x.png", "t", dpi=5)


def test_confusion_titles_give_n_and_accuracy(tmp_path):
    title = figure_title("ResNet-18 baseline on Mix", "masked images", MATRIX)
    assert title == "ResNet-18 baseline on Mix\nmasked images: n = 16, accuracy 75.0%"
    assert figure_title("x", "none", np.zeros((2, 2), int)).endswith("none: n = 0, no images")
    svg = plot_confusion(MATRIX, CLASSES, tmp_path / "c.svg", title, figure_format="svg").read_text()
    assert "masked images: n = 16, accuracy 75.0%" in svg  # SVG text stays text


def test_tsne_has_a_panel_per_fold_each_with_its_legend(tmp_path, monkeypatch):
    drawn = []
    save = figures.save
    monkeypatch.setattr(figures, "save", lambda fig, *a, **k: (drawn.append(fig), save(fig, *a, **k))[1])
    given = rounds(3)
    assert plot_tsne(given, CLASSES, tmp_path / "tsne.svg", "t-SNE", figure_format="svg") is not None
    [fig] = drawn
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 3
    for ax, (name, _, part) in zip(panels, given):
        right = (part["label"] == part["predicted"]).mean()
        assert ax.get_title() == f"{name}: n = {len(part)}, accuracy {right:.1%}"
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend == [*CLASSES, "non-masked", "masked"]
    svg = (tmp_path / "tsne.svg").read_text()
    assert all(f"fold {f}: n = 24" in svg for f in range(3))
    assert plot_tsne([("fold 0", np.zeros((3, 4)), round_predictions(3, 0))], CLASSES, tmp_path / "none.png", "t") is None


# ----------------------------------------------------------------------------- contact sheet


@pytest.fixture(scope="module")
def sheet_ws(tmp_path_factory):
    return build_workspace(tmp_path_factory.mktemp("sheet") / "ws", subjects=2)


@pytest.mark.parametrize("suffix", figures.FORMATS)
def test_contact_sheet_format_follows_the_suffix(sheet_ws, tmp_path, suffix):
    out = write_contact_sheet(sheet_ws, sheet_ws.load(), tmp_path / f"faces.{suffix}", per_row=3, tile=48)
    assert signature(out) == suffix
    again = write_contact_sheet(sheet_ws, sheet_ws.load(), tmp_path / f"again.{suffix}", per_row=3, tile=48)
    assert out.read_bytes() == again.read_bytes()
    with pytest.raises(UsageError, match=r"must end in \.png, \.pdf or \.svg"):
        write_contact_sheet(sheet_ws, sheet_ws.load(), tmp_path / "faces.jpg")


def test_per_row_and_image_ids(sheet_ws):
    frame = sheet_ws.load().frame
    groups = frame.groupby(["label", "masked"]).ngroups
    plain = render_contact_sheet(sheet_ws, frame, per_row=3, tile=48)
    wide = render_contact_sheet(sheet_ws, frame, per_row=5, tile=48)
    assert plain.shape[1] == 190 + 3 * (48 + 4) and wide.shape[1] == 190 + 5 * (48 + 4)
    plain, with_ids = (render_contact_sheet(sheet_ws, frame, per_row=3, tile=96, label_ids=ids) for ids in (False, True))
    assert with_ids.shape[0] == plain.shape[0] + 13 * groups  # a 13-pixel strip under each row of 96-pixel tiles
    # under the first tile of the first row: the background (row ends 4 pixels lower) without ids,
    # written text in the strip with them
    tile_x = slice(190, 190 + 96)
    assert (plain[4 + 96 : 4 + 96 + 4, tile_x] == 24).all()
    assert (with_ids[4 + 96 : 4 + 96 + 13, tile_x] > 128).any()
    with pytest.raises(UsageError, match="per_row=0 must be between 1 and 200"):
        render_contact_sheet(sheet_ws, frame, per_row=0)


def test_cli_contact_sheet_options(sheet_ws, tmp_path):
    runner = CliRunner()
    out = tmp_path / "faces.pdf"
    done = runner.invoke(app, ["stats", "-w", str(sheet_ws.root), "--contact-sheet", str(out), "--per-row", "4", "--label-ids"])
    assert done.exit_code == 0, done.output
    assert signature(out) == "pdf"
    bad = runner.invoke(app, ["stats", "-w", str(sheet_ws.root), "--contact-sheet", str(tmp_path / "x.png"), "--per-row", "0"])
    assert bad.exit_code == 1 and "--per-row 0 must be between 1 and 200" in bad.output
    refused = runner.invoke(app, ["align", "-w", str(sheet_ws.root), "--contact-sheet", str(tmp_path / "x.gif")])
    assert refused.exit_code == 1 and "must end in .png, .pdf or .svg" in refused.output
    assert not (tmp_path / "x.gif").exists()
