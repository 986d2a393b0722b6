"""``ferdata demo``: an embedded sample laid out like an MSD-E delivery, and the whole pipeline on it.

The sample is made from real face photos that installed packages ship (insightface's group photo
``t1.jpg`` and ``Tom_Hanks_54745.png``, scikit-image's astronaut): each face is one *subject*,
photographed seven times (small changes of pose, scale and light stand in for the seven
expressions) and again with a mask drawn over nose, mouth and chin from the detected landmarks
(by :func:`ferdata.vision.masks.draw_mask`, the drawer ``ferdata mask-synth`` uses).
Everything lands in an AES-256 zip with the MSD-E layout, beside a votes file of 7 annotators
who flag a few images, so the real commands run on it unchanged.

**The expression labels are made up.** The faces do not show the expressions their names claim,
so any accuracy the demo's training reports means nothing; it only shows that the steps run.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fsutil import atomic_path
from .progress import ProgressFn, null_progress

DEMO_PASSWORD_ENV = "FERDATA_DEMO_PASSWORD"
DEMO_PASSWORD = "ferdata-demo"  # a demo archive's password is no secret: it is printed in the docs
ANNOTATORS = 7
MSD_E_CLASSES = ("surprise", "fear", "disgust", "happy", "sad", "angry", "neutral")


@dataclass(frozen=True)
class Sample:
    archive: Path
    votes: Path
    subjects: int
    images: int
    flagged: int


@dataclass(frozen=True)
class _Subject:
    rgb: np.ndarray  # square crop around the face
    landmarks: np.ndarray  # (5, 2) in the crop


def _photos() -> list[np.ndarray]:
    from PIL import Image

    try:
        import insightface
        from skimage import data as skdata
    except ImportError:
        from .errors import FerdataError

        raise FerdataError(
            "ferdata demo builds its sample from photos that insightface and scikit-image ship: "
            "pip install 'ferdata[demo]' (or -e \".[demo]\" in a checkout)"
        ) from None

    images = Path(insightface.__file__).parent / "data" / "images"
    photos = [np.asarray(Image.open(images / name).convert("RGB")) for name in ("t1.jpg", "Tom_Hanks_54745.png")]
    photos.append(skdata.astronaut())
    return photos


def _subjects(size: int = 256) -> list[_Subject]:
    """Every face in the photos, cropped square with a margin and its landmarks found."""
    import cv2

    from .align import find_faces
    from .vision.detectors import load_detector

    detector = load_detector("retinaface", None, "cpu")
    subjects = []
    for photo in _photos():
        faces = sorted(find_faces(detector, photo), key=lambda f: (f.box[0], f.box[1]))
        for face in faces:
            x1, y1, x2, y2 = face.box
            side = 1.7 * max(x2 - x1, y2 - y1)
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            scale = size / side
            matrix = np.array([[scale, 0, size / 2 - cx * scale], [0, scale, size / 2 - cy * scale]])
            crop = cv2.warpAffine(photo, matrix, (size, size), flags=cv2.INTER_AREA, borderValue=(128, 128, 128))
            points = face.landmarks @ matrix[:, :2].T + matrix[:, 2]
            subjects.append(_Subject(crop, points))
    return subjects


def _pose(subject: _Subject, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One 'expression': the subject turned, scaled and lit a little differently."""
    import cv2

    size = subject.rgb.shape[0]
    angle, scale = rng.uniform(-10, 10), rng.uniform(0.92, 1.08)
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    rgb = cv2.warpAffine(subject.rgb, matrix, (size, size), borderValue=(128, 128, 128))
    rgb = np.clip(rgb.astype(np.float32) * rng.uniform(0.85, 1.15) + rng.uniform(-12, 12), 0, 255).astype(np.uint8)
    points = subject.landmarks @ matrix[:, :2].T + matrix[:, 2]
    return rgb, points


def _jpeg(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def _votes(image_ids: list[tuple[str, str]], rng: np.random.Generator) -> tuple[list[tuple[str, str, str]], int]:
    """7 annotators' long-form votes; a few images are flagged the ways the paper describes."""
    rows: list[tuple[str, str, str]] = []
    flagged_ids = rng.choice(len(image_ids), size=min(8, len(image_ids)), replace=False)
    plans = {}
    for n, index in enumerate(flagged_ids):
        image_id, label = image_ids[index]
        others = [c for c in MSD_E_CLASSES if c != label]
        new = others[int(rng.integers(len(others)))]
        second = [c for c in others if c != new][0]
        if n % 3 == 0:  # 6 of 7 name another class, 1 keeps the original (1/7 <= 25%): relabelled
            plans[image_id] = [new] * 6 + ["ok"]
        elif n % 3 == 1:  # 3 name X, 2 name Y: no class reaches half, removed
            plans[image_id] = [new] * 3 + [second] * 2 + ["ok"] * 2
        else:  # one annotator flags without a class: the original label stays (6 of 7 endorse it)
            plans[image_id] = ["flag"] + ["ok"] * 6
    for image_id, _ in image_ids:
        votes = plans.get(image_id, ["ok"] * ANNOTATORS)
        rows.extend((image_id, f"annotator{a + 1}", vote) for a, vote in enumerate(votes))
    return rows, len(plans)


def build_sample(out: Path, *, seed: int = 0) -> Sample:
    """Write ``out/msd-e-demo.zip`` (AES-256, password :data:`DEMO_PASSWORD`) and ``out/votes.csv``."""
    import pyzipper

    from .vision.masks import builtin_textures, choose_style, draw_mask

    out.mkdir(parents=True, exist_ok=True)
    textures = builtin_textures()
    rng = np.random.default_rng(seed)
    subjects = _subjects()
    archive = out / "msd-e-demo.zip"
    labelled: list[tuple[str, str]] = []
    pairs: list[str] = []
    with (
        atomic_path(archive) as tmp,
        pyzipper.AESZipFile(tmp, "w", compression=pyzipper.ZIP_STORED, encryption=pyzipper.WZ_AES) as zf,
    ):
        zf.setpassword(DEMO_PASSWORD.encode())
        for s, subject in enumerate(subjects, start=1):
            style = choose_style(seed, f"subject-{s}", len(textures))  # each subject keeps one mask
            for index, label in enumerate(MSD_E_CLASSES):
                name = f"{s:03d}_{index}_demo.jpg"
                rgb, points = _pose(subject, rng)
                zf.writestr(f"MSD-E-demo/MSD-E/{name}", _jpeg(rgb))
                zf.writestr(f"MSD-E-demo/MSD-ME/{name}", _jpeg(draw_mask(rgb, points, textures[style.texture], style)))
                pairs.append(name)
                stem = name.rsplit(".", 1)[0]
                labelled += [(f"MSD-E/{stem}", label), (f"MSD-ME/{stem}", label)]
        zf.writestr("MSD-E-demo/Paired_files.txt", "\n".join(pairs) + "\n")
    rows, flagged = _votes(labelled, rng)
    votes = out / "votes.csv"
    with atomic_path(votes) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "annotator", "vote"])
        writer.writerows(rows)
    return Sample(archive=archive, votes=votes, subjects=len(subjects), images=len(labelled), flagged=flagged)


# ----------------------------------------------------------------------------- the pipeline


@dataclass
class Step:
    """One step of the demo: its title, the lines that summarise it, and its files."""

    title: str
    lines: list[str]


@dataclass
class DemoResult:
    out: Path
    workspace: Path
    steps: list[Step]
    seconds: float


def run_demo(
    out: Path,
    *,
    epochs: int = 2,
    device: str = "auto",
    seed: int = 0,
    on_step: Callable[[Step], None] | None = None,
    progress: ProgressFn | None = None,
) -> DemoResult:
    """Build the sample under ``out`` and run every step on it, as a researcher would on real data.

    ``on_step(step)`` is called after each step (the CLI prints it). The workspace is
    ``out/workspace``; the published dataset ``out/dataset``; the training run ``out/run``.
    """
    import time

    from .archives import Secret
    from .folds import make_folds
    from .ingest import ingest
    from .pairs import make_pairs
    from .publish import publish
    from .relabel import relabel
    from .stats import summary
    from .vision.contact import write_contact_sheet
    from .workspace import Workspace

    progress = progress or null_progress
    start = time.perf_counter()
    out = Path(out).resolve()
    ws = Workspace.resolve(out / "workspace")
    steps: list[Step] = []

    def done(title: str, lines: list[str]) -> None:
        steps.append(Step(title, lines))
        if on_step is not None:
            on_step(steps[-1])

    sample = build_sample(out / "delivery", seed=seed)
    done(
        "sample",
        [
            f"{sample.subjects} subjects × 7 made-up expressions × (non-masked + masked) = {sample.images} images",
            f"{sample.archive.name}: AES-256 zip in the MSD-E layout (password {DEMO_PASSWORD!r})",
            f"{sample.votes.name}: {ANNOTATORS} annotators, {sample.flagged} images flagged",
        ],
    )

    result = ingest(
        ws,
        sample.archive,
        dataset="msd-e",
        password=lambda: Secret(DEMO_PASSWORD),
        align_options={"device": device},
        progress=progress,
    )
    faces = result.manifest.frame["face_status"].value_counts().to_dict()
    done(
        "ingest",
        [
            f"{result.rows} images extracted into {ws.root.name}/originals/msd-e, manifest {ws.root.name}/manifests/msd-e.parquet",
            "faces: "
            + ", ".join(f"{k} {v}" for k, v in sorted(faces.items()))
            + f" ({result.align_report.detector} on {result.align_report.provider})",
        ],
    )

    relabelled = relabel(ws, sample.votes, dataset="msd-e")
    actions = relabelled.audit["action"].value_counts().to_dict()
    done(
        "relabel",
        [
            "MSD-E rule (paper section 2.2): at least half of the 7 annotators for the winner, at most 25% for the others",
            "images: " + ", ".join(f"{k} {v}" for k, v in sorted(actions.items())),
            f"audit: {ws.root.name}/tables/msd-e/relabel_audit.csv",
        ],
    )

    pairs = make_pairs(ws, dataset="msd-e")
    done(
        "pairs",
        [
            f"{pairs.n_pairs} non-masked/masked pairs, {pairs.n_in_pe} in MSD-PE (both labels agree)",
            "left out of MSD-PE: " + (", ".join(f"{k} {v}" for k, v in pairs.removed_by_reason.items()) or "none"),
        ],
    )

    folds = make_folds(ws, 2, dataset="msd-e", seed=seed, progress=progress)
    sizes = folds.balance.set_index("fold")["images"].to_dict()
    done(
        "folds",
        [
            "2 identity-independent folds: " + ", ".join(f"fold {k}: {v} images" for k, v in sizes.items()),
            f"leakage check: {folds.leakage.summary()['leaks']} leaks across folds "
            f"(exact copies by SHA-256, near copies by perceptual hash)",
        ],
    )

    manifest = ws.load("msd-e")
    sheet = write_contact_sheet(ws, manifest, out / "contact-sheet.png")
    data = summary(manifest)
    done(
        "stats",
        [
            f"{data['images']} images, {data['kept']} kept, {data['subjects']} subjects, {data['pe_pairs']} MSD-PE pairs",
            f"contact sheet: {sheet.relative_to(out)}",
        ],
    )

    published = publish(ws, out / "dataset", dataset="msd-e", progress=progress)
    done(
        "publish",
        [
            f"{out.name}/dataset: configs "
            + ", ".join(f"{config} ({sum(splits.values())} rows)" for config, splits in published.counts.items()),
            f"load it with datasets.load_dataset({str(out / 'dataset')!r}, 'mix')",
        ],
    )

    from .labelissues import label_issues
    from .train.config import TrainConfig
    from .train.loop import train_baseline

    config = TrainConfig(subset="mix", epochs=epochs, folds=2, seed=seed, device=device, batch_size=32, milestones=())
    run = train_baseline(out / "dataset", out / "run", config, progress=progress)
    mean = run.summary["mean"]
    done(
        "train-baseline",
        [
            f"ResNet-18 on Mix, 2 folds × {epochs} epochs from the published dataset (labels made up: the accuracy means nothing)",
            f"accuracy {100 * mean['accuracy']:.1f}% (non-masked {100 * mean['accuracy_nm']:.1f}%, masked {100 * mean['accuracy_m']:.1f}%)",
            f"{out.name}/run: results.md, results.json, oof.parquet, confusion matrices, t-SNE",
        ],
    )

    issues = label_issues(out / "run", tag=True, ws=ws, dataset="msd-e")
    done(
        "label-issues",
        [
            f"{len(issues.issues)} of {issues.n_checked} images look mislabelled to cleanlab; tagged label_issue for review",
            f"ranked list: {issues.table_path.relative_to(out)}",
        ],
    )
    return DemoResult(out=out, workspace=ws.root, steps=steps, seconds=time.perf_counter() - start)
