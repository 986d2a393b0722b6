"""Each adapter on a tiny imitation of its real layout, through the library's ingest (no alignment)."""

from __future__ import annotations

import pytest

from builders import FER_CLASSES, fer2013_csv, fer_rows, ferplus_votes, image_bytes, msd_e_tree, write
from ferdata.errors import LayoutError, UsageError
from ferdata.ingest import UnparsedFilesError, ingest
from ferdata.workspace import Workspace


def rows_by_id(result):
    return {r["image_id"]: r for r in result.manifest.frame.to_dict("records")}


def test_msd_e_subject_label_mask_and_twin_from_the_layout(tmp_path, ws):
    src = msd_e_tree(tmp_path / "src", subjects=2)
    result = ingest(ws, src, dataset="msd-e", align=False)
    assert result.rows == 2 * 7 * 2
    rows = rows_by_id(result)
    twin_nm, twin_m = rows["MSD-E/002_3_dslr"], rows["MSD-ME/002_3_dslr"]
    assert (twin_nm["subject_id"], twin_nm["label_original"], twin_nm["label"]) == ("002", "happy", "happy")
    assert twin_nm["masked"] == False and twin_m["masked"] == True  # noqa: E712
    assert twin_m["occlusion"] == ["mask"] and twin_nm["occlusion"] == []
    assert twin_nm["pair_key"] == twin_m["pair_key"] == "002_3_dslr"
    assert twin_nm["source"] == "delivery/MSD-E/002_3_dslr.jpg"  # wrapping folder kept in source, not in ids
    assert twin_nm["original_path"] == "originals/msd-e/MSD-E/002_3_dslr.jpg"
    assert (ws.root / twin_nm["original_path"]).read_bytes() == (src / twin_nm["source"]).read_bytes()
    assert rows["MSD-E/001_0_dslr"]["label_original"] == "surprise"
    assert rows["MSD-E/001_6_dslr"]["label_original"] == "neutral"
    assert (twin_nm["width"], twin_nm["height"]) == (24, 20)
    assert (ws.tables_dir("msd-e") / "Paired_files.txt").is_file()
    assert result.warnings == [
        "msd-e differs from the counts its authors published: 28 images (published 1,960), "
        "2 subjects (published 142), 14 masked (published 996), 14 nonmasked (published 964)"
    ]


def test_msd_e_unparsable_names_stop_the_ingest_and_are_listed(tmp_path, ws):
    src = msd_e_tree(tmp_path / "src", subjects=1)
    write(src / "delivery/MSD-E/IMG_2041.jpg", image_bytes(99))
    write(src / "delivery/MSD-ME/001_9_x.jpg", image_bytes(98))
    with pytest.raises(UnparsedFilesError, match=r"2 files in src do not fit the msd-e layout.*skip_unparsed=True") as info:
        ingest(ws, src, dataset="msd-e", align=False)
    report = ws.internal / "reports" / "unparsed-msd-e.csv"
    assert str(report) in str(info.value)
    text = report.read_text()
    assert "IMG_2041.jpg" in text and "label index 9 is not in 0..6" in text
    assert ws.datasets() == [] and not ws.originals_dir("msd-e").exists()

    result = ingest(ws, src, dataset="msd-e", align=False, skip_unparsed=True)
    assert result.rows == 14 and len(result.unparsed) == 2
    assert "IMG_2041.jpg" in (ws.tables_dir("msd-e") / "unparsed-msd-e.csv").read_text()


@pytest.mark.parametrize("variant", ["fer2013", "icml", "quoted"])
def test_fer2013_csv_rows_become_pngs_with_ferplus_ids(tmp_path, ws, variant):
    from PIL import Image
    import numpy as np

    name = "icml_face_data.csv" if variant == "icml" else "fer2013.csv"
    data = fer2013_csv(fer_rows(10), seed=1 if variant == "quoted" else 0, icml=variant == "icml")
    write(tmp_path / "src" / "data" / name, data)
    result = ingest(ws, tmp_path / "src", align=False)  # detected
    assert result.dataset == "fer2013"
    frame = result.manifest.frame.set_index("image_id")
    assert list(frame.index) == [f"fer2013-{i:07d}" for i in range(10)]
    assert frame.loc["fer2013-0000003", "label_original"] == FER_CLASSES[3] == "happy"
    assert frame.loc["fer2013-0000005", "label_original"] == "surprise"
    assert frame["split"].tolist() == ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    assert frame.loc["fer2013-0000002", "source"] == f"data/{name}#row=2"
    png = ws.root / frame.loc["fer2013-0000007", "original_path"]
    pixels = np.asarray(Image.open(png))
    assert pixels.shape == (48, 48) and pixels.dtype == np.uint8
    line = data.decode().splitlines()[8]
    expected = np.array(line.replace('"', "").split(",")[2 if variant == "icml" else 1].split(), dtype=np.uint8)
    assert (pixels.ravel() == expected).all()  # lossless
    import hashlib

    assert frame.loc["fer2013-0000007", "sha256"] == hashlib.sha256(expected.tobytes()).hexdigest()


def test_fer2013_train_test_csv_variant_skips_unlabelled_test(tmp_path, ws):
    write(tmp_path / "src/train.csv", fer2013_csv(fer_rows(5), usage=False))
    write(tmp_path / "src/test.csv", b"pixels\n" + b" ".join([b"1"] * 2304) + b"\n")
    result = ingest(ws, tmp_path / "src", dataset="fer2013", align=False)
    assert result.rows == 5 and set(result.manifest.frame["split"]) == {"train"}
    assert result.manifest.frame["image_id"].iloc[0] == "train-0000000"
    assert any("test.csv has no emotion column" in n for n in result.notices)


def test_fer2013_bad_rows_are_reported(tmp_path, ws):
    lines = fer2013_csv(fer_rows(3)).decode().splitlines()
    lines.append("9," + " ".join(["0"] * 2304) + ",Training")
    lines.append("1,1 2 3,Training")
    write(tmp_path / "src/fer2013.csv", ("\n".join(lines) + "\n").encode())
    with pytest.raises(UnparsedFilesError, match=r"2 rows in src do not fit.*fer2013.csv#row=3 \(emotion 9 is not in 0..6\)"):
        ingest(ws, tmp_path / "src", align=False)


def test_fer2013_folder_variant_reads_usage_from_file_names(tmp_path, ws):
    for split, emotion, file in [("train", "angry", "Training_10"), ("train", "happy", "Training_11"),
                                 ("test", "sad", "PublicTest_5"), ("test", "fear", "PrivateTest_6")]:
        write(tmp_path / "src" / split / emotion / f"{file}.jpg", image_bytes(hash(file) % 1000, (48, 48)))
    result = ingest(ws, tmp_path / "src", align=False)
    assert result.dataset == "fer2013"
    rows = rows_by_id(result)
    assert rows["test/sad/PublicTest_5"]["split"] == "val" and rows["test/fear/PrivateTest_6"]["split"] == "test"
    assert rows["train/angry/Training_10"]["label_original"] == "angry"


def test_ferplus_keeps_the_votes_and_fer2013_labels(tmp_path, ws):
    write(tmp_path / "src/fer2013.csv", fer2013_csv(fer_rows(6)))
    write(tmp_path / "src/FERPlus/fer2013new.csv", ferplus_votes(6))
    result = ingest(ws, tmp_path / "src", align=False)
    assert result.dataset == "ferplus"  # fer2013new.csv beside the pixels decides
    assert result.rows == 6 and set(result.manifest.frame["dataset"]) == {"ferplus"}
    assert (ws.tables_dir("ferplus") / "fer2013new.csv").read_bytes() == ferplus_votes(6)
    assert result.manifest.frame.set_index("image_id").loc["fer2013-0000002", "label_original"] == "fear"


@pytest.mark.parametrize("codes", [["AN", "CO", "DI", "FE", "HA", "NE", "SA", "SU"], ["AN", "DI", "FE", "HA", "NE", "SA", "SU"]])
def test_occlu_fer_accepts_seven_or_eight_classes(tmp_path, ws, codes):
    seed = 0
    for split in ("train", "valid"):
        for code in codes:
            seed += 1
            write(tmp_path / "src/Occlu-FER" / split / code / f"{seed}.png", image_bytes(seed, fmt="PNG"))
    result = ingest(ws, tmp_path / "src", align=False)
    assert result.dataset == "occlu-fer" and result.rows == 2 * len(codes)
    frame = result.manifest.frame
    assert set(frame["split"]) == {"train", "val"}
    assert ("contempt" in set(frame["label_original"])) == ("CO" in codes)
    assert all(tags == ["other"] for tags in frame["occlusion"])
    assert f"{len(codes)} train (published 6,838)" in result.warnings[0]


def test_ferv39k_frames_carry_clip_and_split(tmp_path, ws):
    root = tmp_path / "src/FERV39k"
    clips = [("Daily", "Happy", "0001"), ("Daily", "Sad", "0002"), ("Talk", "Angry", "0100")]
    for i, (scene, emotion, clip) in enumerate(clips):
        for frame in range(3):
            write(root / "2_ClipsforFaceCrop" / scene / emotion / clip / f"{frame:04d}.jpg", image_bytes(10 * i + frame))
    write(root / "3_ClipsforScenImages/Daily/Happy/0001/0000.jpg", image_bytes(77))
    write(root / "4_setups/All_scenes/train_All.csv", b"Daily/Happy/0001 3\nDaily/Sad/0002 5\n")
    write(root / "4_setups/All_scenes/test_All.csv", b"Talk/Angry/0100 0\n")
    result = ingest(ws, tmp_path / "src", align=False)
    assert result.dataset == "ferv39k" and result.rows == 9
    rows = rows_by_id(result)
    row = rows["Talk/Angry/0100/0002"]
    assert (row["clip_id"], row["split"], row["label_original"]) == ("Talk/Angry/0100", "test", "angry")
    assert rows["Daily/Happy/0001/0000"]["split"] == "train"


def test_imagefolder_with_synonyms_and_with_a_label_map(tmp_path, ws):
    for split in ("training", "validation"):
        for folder in ("Anger", "Happiness", "Q7"):
            write(tmp_path / "src" / split / folder / "a.jpg", image_bytes(hash(split + folder) % 999))
    with pytest.raises(UnparsedFilesError, match=r"map it with label_map=\{'Q7': '<label>'\}"):
        ingest(ws, tmp_path / "src", dataset="imagefolder", align=False)
    result = ingest(ws, tmp_path / "src", dataset="imagefolder", align=False,
                    label_map={"Anger": "angry", "Happiness": "happy", "Q7": "neutral"})
    rows = rows_by_id(result)
    assert rows["validation/Q7/a"]["label_original"] == "neutral" and rows["validation/Q7/a"]["split"] == "val"
    assert rows["training/Anger/a"]["label_original"] == "angry"


def test_unknown_layout_asks_for_dataset(tmp_path, ws):
    write(tmp_path / "src/notes/readme.txt", b"hello")
    with pytest.raises(LayoutError, match="pass dataset=NAME"):
        ingest(ws, tmp_path / "src", align=False)
    assert ws.datasets() == []


def test_a_named_dataset_with_no_images_says_so(tmp_path, ws):
    write(tmp_path / "src/fer2013.csv", fer2013_csv(fer_rows(2)))
    with pytest.raises(LayoutError, match="holds no msd-e images"):
        ingest(ws, tmp_path / "src", dataset="msd-e", align=False)


def test_a_bare_fer2013_csv_can_be_given_directly(tmp_path, ws):
    csv_path = write(tmp_path / "fer2013.csv", fer2013_csv(fer_rows(4)))
    result = ingest(ws, csv_path, align=False)
    assert result.dataset == "fer2013" and result.rows == 4
    assert result.manifest.frame["source"].iloc[0] == "fer2013.csv#row=0"


# -- FER2013 CSVs recognised by their header; their rows checked one by one ---------------------


def _source_free(frame):
    """The manifest without the columns that name the file (the rest must not depend on it)."""
    return frame.drop(columns=["source"]).reset_index(drop=True)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("fer2013 (1).csv", fer2013_csv(fer_rows(10))),
        ("data.csv", fer2013_csv(fer_rows(10))),
        ("fer2013.csv", b"\xef\xbb\xbf" + fer2013_csv(fer_rows(10))),  # UTF-8 byte-order mark
        ("export.csv", b"\xef\xbb\xbf" + fer2013_csv(fer_rows(10), icml=True)),  # icml columns, leading spaces
        ("fer2013_utf16.csv", fer2013_csv(fer_rows(10)).decode().encode("utf-16")),  # with its byte-order mark
    ],
)
def test_a_fer2013_csv_is_recognised_by_its_header_whatever_its_name(tmp_path, name, data):
    write(tmp_path / "plain/fer2013.csv", fer2013_csv(fer_rows(10)))
    reference = ingest(Workspace.resolve(tmp_path / "ref"), tmp_path / "plain", align=False).manifest.frame
    write(tmp_path / "src/download" / name, data)

    result = ingest(Workspace.resolve(tmp_path / "ws"), tmp_path / "src", align=False)  # detected, no dataset named

    assert result.dataset == "fer2013" and result.rows == 10
    assert _source_free(result.manifest.frame).equals(_source_free(reference))
    assert result.manifest.frame["source"].iloc[2] == f"download/{name}#row=2"


def test_a_renamed_csv_given_directly_and_zipped_ingests_like_fer2013_csv(tmp_path):
    import archive_factory as af

    data = b"\xef\xbb\xbf" + fer2013_csv(fer_rows(6))
    bare = write(tmp_path / "data.csv", data)
    zipped = af.zip_archive(tmp_path / "delivery.zip", {"fer2013 (1).csv": data})
    frames = [ingest(Workspace.resolve(tmp_path / f"ws{i}"), src, align=False).manifest.frame for i, src in enumerate((bare, zipped))]
    assert _source_free(frames[0]).equals(_source_free(frames[1]))
    assert list(frames[0]["image_id"]) == [f"fer2013-{i:07d}" for i in range(6)]


def test_ferplus_votes_are_recognised_by_their_header_too(tmp_path, ws):
    write(tmp_path / "src/data.csv", fer2013_csv(fer_rows(6)))
    write(tmp_path / "src/FERPlus/fer2013new (2).csv", b"\xef\xbb\xbf" + ferplus_votes(6))
    result = ingest(ws, tmp_path / "src", align=False)
    assert result.dataset == "ferplus" and result.rows == 6
    assert (ws.tables_dir("ferplus") / "fer2013new.csv").read_bytes().endswith(ferplus_votes(6))


def test_of_two_csvs_holding_the_whole_dataset_one_is_read_and_the_other_named(tmp_path, ws):
    write(tmp_path / "src/fer2013.csv", fer2013_csv(fer_rows(8)))
    write(tmp_path / "src/icml_face_data.csv", fer2013_csv(fer_rows(8), icml=True))
    write(tmp_path / "src/train.csv", fer2013_csv(fer_rows(3), usage=False))
    result = ingest(ws, tmp_path / "src", align=False)
    assert result.rows == 8 and set(result.manifest.frame["source"].str.split("#").str[0]) == {"fer2013.csv"}
    assert sum("was not read: fer2013.csv holds the whole dataset" in n for n in result.notices) == 2


def test_a_csv_without_usage_is_refused_unless_a_split_is_named(tmp_path, ws):
    write(tmp_path / "src/data.csv", fer2013_csv(fer_rows(5), usage=False))
    with pytest.raises(LayoutError, match=r"data.csv has no Usage column, so its rows would have no split: .*split=NAME"):
        ingest(ws, tmp_path / "src", dataset="fer2013", align=False)
    assert ws.datasets() == []

    result = ingest(ws, tmp_path / "src", dataset="fer2013", split="val", align=False)
    frame = result.manifest.frame
    assert set(frame["split"]) == {"val"} and frame["image_id"].iloc[0] == "data-0000000"


@pytest.mark.parametrize(
    ("files", "split", "message"),
    [
        ({"fer2013.csv": fer2013_csv(fer_rows(3))}, "train", "fer2013.csv has one, which gives each row its split"),
        ({"happy/a.jpg": image_bytes(1)}, "train", "imagefolder takes its splits from its layout"),
        ({"fer2013.csv": fer2013_csv(fer_rows(3))}, "training", "split='training' is not one of train, val, test"),
    ],
)
def test_a_split_that_cannot_apply_is_refused(tmp_path, ws, files, split, message):
    for name, data in files.items():
        write(tmp_path / "src" / name, data)
    with pytest.raises(UsageError, match=message):
        ingest(ws, tmp_path / "src", split=split, align=False)


def _fer_lines(n: int = 6) -> list[bytes]:
    return fer2013_csv(fer_rows(n)).split(b"\n")


def _with_row(lines: list[bytes], k: int, row: bytes) -> bytes:
    lines = list(lines)
    lines[k + 1] = row
    return b"\n".join(lines)


def _pixels(values) -> bytes:
    return " ".join(map(str, values)).encode()


BAD_ROWS = {
    "pixel value 300": (b"3," + _pixels([0] * 5 + [300] + [0] * 2298) + b",Training", "pixel value 300 is not in 0..255"),
    "negative pixel": (b"3," + _pixels([-1] + [0] * 2303) + b",Training", "pixel value -1 is not in 0..255"),
    "2303 pixels": (b"3," + _pixels([7] * 2303) + b",Training", "pixels holds 2,303 values, not 48×48 = 2,304"),
    "empty pixels": (b"3,,Training", "pixels is empty"),
    "not a number": (b"3," + _pixels([1, "x2"] + [0] * 2302) + b",Training", "pixel value 'x2' is not a number"),
    "emotion": (b"happy," + _pixels([0] * 2304) + b",Training", "emotion 'happy' is not a number"),
    "usage": (b"3," + _pixels([0] * 2304) + b",Holdout", "unknown Usage 'Holdout'"),
    "huge usage": (b"3," + _pixels([0] * 2304) + b"," + b"X" * 5000, "unknown Usage 'XXXX"),
    "invalid UTF-8": (b"3," + _pixels([0] * 2304) + b",Train\xffing", "the row holds bytes that are not UTF-8 text"),
    "over csv's field limit": (b"3," + b"1 " * 100_000 + b",Training", "the row is longer than 10,240 characters"),
    "short row": (b"3", "the row has only 1 of the header's columns"),
}


@pytest.mark.parametrize(
    ("case", "first"),
    [(case, True) for case in BAD_ROWS] + [(case, False) for case in ("pixel value 300", "empty pixels", "invalid UTF-8")],
)
def test_a_bad_csv_row_is_reported_alone_and_the_good_rows_ingest(tmp_path, ws, case, first):
    """The image size comes from the dataset's facts (48×48), so one bad row, even the first,
    condemns only itself; the reason names the wrong value, shortly."""
    row, reason = BAD_ROWS[case]
    k = 0 if first else 3
    write(tmp_path / "src/fer2013.csv", _with_row(_fer_lines(6), k, row))
    with pytest.raises(UnparsedFilesError) as caught:
        ingest(ws, tmp_path / "src", align=False)
    message = str(caught.value)
    assert f"1 row in src does not fit the fer2013 layout, e.g. fer2013.csv#row={k} ({reason}" in message
    assert len(message) < 600 and "\n" not in message
    assert ws.datasets() == []

    result = ingest(ws, tmp_path / "src", align=False, skip_unparsed=True)
    assert result.rows == 5 and f"fer2013-{k:07d}" not in set(result.manifest.frame["image_id"])
    assert (result.manifest.frame["width"] == 48).all()
