"""`busforge export ...`: a busforge dataset in another framework's layout (nnU-Net v2 for now)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Export a dataset for another framework: nnU-Net v2.", no_args_is_help=True)


@app.command("nnunet")
def nnunet(
    dataset: Annotated[
        Path, typer.Argument(help="busforge dataset folder, e.g. data/real/busi or data/out.")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            envvar="nnUNet_raw",
            help="nnU-Net's raw folder (default: $nnUNet_raw); gets DatasetXXX_NAME/.",
        ),
    ],
    dataset_id: Annotated[int, typer.Option("--id", help="nnU-Net dataset id, 1..999 (custom: 500-999).")],
    name: Annotated[
        str | None, typer.Option(help="Dataset name in DatasetXXX_NAME (default: the dataset's name).")
    ] = None,
    include_normal: Annotated[
        bool,
        typer.Option(
            "--include-normal", help="Export rows without a lesion (normal) as all-background labels."
        ),
    ] = False,
    nnunet_folds: Annotated[
        bool,
        typer.Option(
            "--nnunet-folds",
            help="No splits_final.json: nnU-Net makes its own 5 folds over train + validation "
            "(default: busforge's train/validation split is fold 0).",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an earlier busforge export at the same place.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Write the nnU-Net v2 raw layout: imagesTr/labelsTr (train + validation), imagesTs/labelsTs (test),
    dataset.json, and splits_final.json with busforge's train/validation split as fold 0."""
    from busforge.downstream.nnunet import SPLITS_FILE, describe_excluded, export_nnunet

    result = export_nnunet(
        dataset,
        out,
        dataset_id,
        name,
        include_normal=include_normal,
        nnunet_folds=nnunet_folds,
        force=force,
        progress=not quiet,
    )
    excluded = describe_excluded(result.excluded) or "none"
    normal = f" ({result.normal_included} normal, empty labels)" if result.normal_included else ""
    typer.echo(
        f"{result.folder}: {result.training} training cases{normal}, {result.test} test cases; left out: {excluded}"
    )
    if result.splits_file:
        typer.echo(
            f"{SPLITS_FILE}: fold 0 = busforge's train/validation split (nnUNetv2_plan_and_preprocess "
            f"copies it); train it with `nnUNetv2_train {dataset_id} 2d 0`"
        )
