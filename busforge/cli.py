"""The `busforge` command line. Commands live in busforge/commands/, one file each.

Exit codes: 0 ok, 1 failure, 2 bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from busforge.errors import BadInput

# (command name, "module:function"). Command modules import heavy libraries inside the function.
COMMANDS: list[tuple[str, str]] = [
    ("render", "busforge.commands.render:render"),
    ("plan", "busforge.commands.plan:plan"),
    ("verify", "busforge.commands.verify:verify"),
    ("preview", "busforge.commands.preview:preview"),
    ("evaluate", "busforge.commands.evaluate:evaluate"),
    ("downstream", "busforge.commands.downstream:downstream"),
    ("push", "busforge.commands.push:push"),
    ("train", "busforge.commands.train:app"),
    ("models", "busforge.commands.models:app"),
    ("export", "busforge.commands.export:app"),
    ("import", "busforge.commands.import_:import_"),
    ("calibrate", "busforge.commands.calibrate:calibrate"),
]

app = typer.Typer(
    name="busforge",
    help="Render synthetic breast-ultrasound datasets from declarative recipes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    for name, target in COMMANDS:
        module_name, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        if isinstance(command, typer.Typer):
            app.add_typer(command, name=name)
        else:
            app.command(name)(command)


_register()


def main() -> None:
    try:
        # Without standalone mode click returns the code of a `typer.Exit` instead of exiting.
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except BadInput as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except typer.Exit as err:
        sys.exit(err.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted; finished shards are kept, run the same command again to resume", err=True)
        sys.exit(130)
    except Exception as err:  # click usage errors carry their own exit code
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            sys.exit(2 if isinstance(err, click.exceptions.UsageError | click.exceptions.BadParameter) else 1)
        if os.environ.get("BUSFORGE_DEBUG"):
            raise
        typer.echo(f"error: {type(err).__name__}: {err} (set BUSFORGE_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)
