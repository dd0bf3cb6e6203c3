"""`busforge push DATASET --repo-id USER/NAME`: verify, then publish one tagged, immutable release."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def push(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder, e.g. data/out.")],
    repo_id: Annotated[str, typer.Option(help="Hub dataset repository, USER/NAME.")],
    private: Annotated[bool, typer.Option(help="Create the repository as private.")] = False,
    revision: Annotated[str | None, typer.Option(help="Branch to commit to (default: main).")] = None,
    report: Annotated[
        Path | None,
        typer.Option(help="Evaluation folder to include (default: DATASET/evaluation if present)."),
    ] = None,
) -> None:
    """Push DATASET as one commit tagged v{version}; refuse a changed release, do nothing for an identical one."""
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import get_token

    from busforge.errors import BadInput
    from busforge.release import push as release

    if "/" not in repo_id or repo_id.count("/") != 1:
        raise BadInput(f"--repo-id: {repo_id!r} is not USER/NAME; give the Hub dataset repository id")
    release.check_verified(dataset)  # a broken dataset is reported before any token or network
    token = get_token()
    if token is None:
        raise BadInput("Hugging Face token: none found; set HF_TOKEN or run `hf auth login`, then push again")
    api = release.hub_client()
    try:
        outcome = release.push_dataset(
            dataset, repo_id, api=api, private=private, revision=revision, report=report, verified=True
        )
    except release.PushInterrupted as err:
        typer.echo(f"error: {release.scrub(str(err), token)}", err=True)
        raise typer.Exit(1) from None
    except HfHubHTTPError as err:
        # Never echo the token, whatever the server or client put in the message.
        message = release.scrub(" ".join(str(err).split()), token)
        typer.echo(
            f"error: the Hub refused the push: {message}; {release.failure_hint(err, repo_id)}", err=True
        )
        raise typer.Exit(1) from None
    except Exception as err:
        if not release.network_failure(err):
            raise
        message = release.scrub(" ".join(str(err).split()), token)
        typer.echo(
            f"error: could not reach the Hub ({type(err).__name__}: {message}); {release.failure_hint(err, repo_id)}",
            err=True,
        )
        raise typer.Exit(1) from None
    if outcome.up_to_date:
        typer.echo(f"{repo_id}@{outcome.tag}: already released with this content; nothing to do")
    else:
        typer.echo(f"{repo_id}@{outcome.tag}: pushed {outcome.files} files in commit {outcome.commit}")
