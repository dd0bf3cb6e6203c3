"""The `busforge` command line. Commands live in busforge/commands/, one file each.

Exit codes: 0 ok, 1 failure, 2 bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import errno
import importlib
import os
import re
import sys
from typing import Annotated

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


def _print_version(value: bool) -> None:
    if value:
        from busforge import __version__

        typer.echo(f"busforge {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit."),
    ] = False,
) -> None:
    """Options before the command (`busforge --version`)."""


def _register() -> None:
    for name, target in COMMANDS:
        module_name, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        if isinstance(command, typer.Typer):
            app.add_typer(command, name=name)
        else:
            app.command(name)(command)


_register()


INTERRUPTED = "interrupted; finished shards are kept, rerun the same command to resume"
MAX_MESSAGE = 2000  # an error line is read by a person; a huge value in it is cut


def _click_errors() -> tuple[type[Exception], ...]:
    """click's error classes: Typer bundles its own copy of click (typer._click), so an
    `isinstance(err, click.ClickException)` alone never matches what Typer raises."""
    types: list[type[Exception]] = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            types.append(importlib.import_module(module).ClickException)
        except (ImportError, AttributeError):
            pass
    return tuple(types)


# Typer checks `min=`/`max=` through pydantic; its phrases, shortened to what the option allows.
RANGE_PHRASES = [
    (re.compile(r"^Input should be less than or equal to (\S+)$"), "at most {}"),
    (re.compile(r"^Input should be greater than or equal to (\S+)$"), "at least {}"),
    (re.compile(r"^Input should be less than (\S+)$"), "less than {}"),
    (re.compile(r"^Input should be greater than (\S+)$"), "more than {}"),
]


def usage_text(err: Exception) -> str:
    """A click usage error as one line; a bad option value names the option: `--per-stratum: at most 16`."""
    param = getattr(err, "param", None)
    message = getattr(err, "message", None)
    if param is None or not isinstance(message, str) or type(err).__name__ == "MissingParameter":
        return err.format_message()
    name = max(param.opts, key=len) if param.opts else param.name
    for pattern, phrase in RANGE_PHRASES:
        if match := pattern.match(message.strip()):
            return f"{name}: {phrase.format(match.group(1))}"
    return f"{name}: {message[0].lower() + message[1:] if message.startswith('Input') else message}"


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_MESSAGE else line[:MAX_MESSAGE] + " ... (cut)"


def _exit(message: str, code: int) -> None:
    typer.echo(f"error: {_one_line(message)}", err=True)
    sys.exit(code)


def io_message(err: OSError) -> str:
    where = f"{err.filename}: " if err.filename else ""
    if err.errno == errno.ENOSPC:
        return f"{where}no space left on the device; free space, then rerun the same command: it resumes"
    what = err.strerror or str(err)
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{where}{what}; make the folder writable or choose another --out"
    return f"{where}{what} (I/O failure; set BUSFORGE_DEBUG=1 for the traceback)"


def main() -> None:
    try:
        # Without standalone mode click returns the code of a `typer.Exit` instead of exiting.
        code = app(standalone_mode=False, prog_name="busforge")
        if code == 130:  # Typer turns Ctrl-C into Exit(130), silently
            typer.echo(INTERRUPTED, err=True)
        sys.exit(code if isinstance(code, int) else 0)
    except BadInput as err:
        _exit(str(err), 2)
    except typer.Exit as err:
        sys.exit(err.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo(INTERRUPTED, err=True)
        sys.exit(130)
    except OSError as err:  # I/O failure: exit 1, naming the path
        if os.environ.get("BUSFORGE_DEBUG"):
            raise
        _exit(io_message(err), 1)
    except Exception as err:
        if isinstance(err, _click_errors()):
            usage = getattr(err, "exit_code", 1) == 2  # UsageError and BadParameter
            ctx = getattr(err, "ctx", None)
            if type(err).__name__ == "NoArgsIsHelpError":  # `busforge` alone: Typer printed the help
                sys.exit(2)
            where = f"{ctx.command_path}: " if ctx is not None else ""
            hint = f" (see {ctx.command_path} --help)" if usage and ctx is not None else ""
            _exit(f"{where}{usage_text(err)}{hint}", 2 if usage else 1)
        if os.environ.get("BUSFORGE_DEBUG"):
            raise
        _exit(f"{type(err).__name__}: {err} (set BUSFORGE_DEBUG=1 for the traceback)", 1)


if __name__ == "__main__":  # `python -m busforge.cli`, as `busforge`
    main()
