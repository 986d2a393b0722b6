"""``ferdata demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import choice_option, command, out, progress_bar

REAL_DATA = """\
On real data, the same steps are:
  export MSDE_PW='the password from the e-mail'
  ferdata ingest msd-e.zip --dataset msd-e --password-env MSDE_PW -w ws
  ferdata relabel -w ws --votes votes.csv
  ferdata pairs -w ws
  ferdata folds --k 10 --seed 0 -w ws
  ferdata stats -w ws --contact-sheet faces.png
  ferdata publish -w ws --out msd-e-dataset
  ferdata train-baseline --data msd-e-dataset --subset mix --folds 10 --out runs/mix"""


@command("demo")
def demo_command(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for the sample, the workspace, the dataset and the run.")
    ] = Path("ferdata-demo"),
    epochs: Annotated[
        int, typer.Option(help="Training epochs per fold (the paper uses 25; the demo only shows the step runs).")
    ] = 2,
    device: Annotated[
        str,
        choice_option(
            "--device", where="ferdata.train.config:DEVICES", help="auto, cpu or cuda, for detection and training."
        ),
    ] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for the sample, the folds and training.")] = 0,
) -> None:
    """Run the whole pipeline on an embedded sample made from real face photos, end to end.

    The sample is laid out like an MSD-E delivery (MSD-E/, MSD-ME/ with drawn masks,
    Paired_files.txt) inside an AES-encrypted zip, with votes from 7 annotators. Its expression
    labels are made up, so the accuracy the demo prints means nothing: it shows that each step
    runs and what it writes.

    Example: ferdata demo --out /tmp/ferdata-demo
    """
    from rich.panel import Panel

    from ..demo import run_demo

    def show(step) -> None:
        out.print(Panel("\n".join(step.lines), title=step.title, title_align="left", expand=False))

    with progress_bar() as progress:
        result = run_demo(out_dir, epochs=epochs, device=device, seed=seed, on_step=show, progress=progress)
    out.print(f"\nDone in {result.seconds:.0f}s. Everything is under {result.out}:")
    out.print("  delivery/   the sample archive and votes    workspace/  manifest, originals, aligned faces, tables")
    out.print("  dataset/    the published dataset           run/        the training run (results.md)")
    out.print("The demo's expression labels are made up: its accuracy means nothing.\n")
    out.print(REAL_DATA, highlight=False)
