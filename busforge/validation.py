"""One way to turn a pydantic ValidationError into a one-line `BadInput` (recipes, renderer options)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from busforge.errors import BadInput

# Names pydantic puts into an error's location for union branches and validators, not keys.
_TYPE_TAGS = {"str", "int", "float", "bool", "none", "list", "dict", "tuple"}

Describe = Callable[[list[str], dict[str, Any]], str | None]


def error_path(error: dict[str, Any]) -> list[str]:
    """The key path of one pydantic error, without union-branch and validator tags."""
    return [
        str(part)
        for part in error["loc"]
        if not (
            isinstance(part, str)
            and (part.startswith(("function-", "constrained-")) or "[" in part or part in _TYPE_TAGS)
        )
    ]


def plain_message(error: dict[str, Any]) -> str:
    return error["msg"].removeprefix("Value error, ")


def bad_input(
    err: ValidationError,
    *,
    prefix: tuple[str, ...] = (),
    source: str | None = None,
    describe: Describe | None = None,
) -> BadInput:
    """The first problem of `err` as a `BadInput` with its key path (under `prefix`).

    `describe(path, error)` may word the message for the caller's model; by default unknown keys,
    missing keys and validator messages get the generic wording. Other problems are counted once
    per key (a union reports one error per branch).
    """
    errors = err.errors()
    # Of a union's branches (`domain: str | dict`), the one that got deepest says what is wrong.
    first = max(errors, key=lambda e: len(error_path(e)))
    path = error_path(first)
    message = describe(path, first) if describe is not None else None
    if message is None:
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        elif first["type"] == "missing":
            message = "required key is missing"
        else:
            message = plain_message(first)
    more = len({tuple(error_path(e)) for e in errors} - {tuple(path)})
    if more:
        message += f" (and {more} more problem(s))"
    return BadInput(message, key=".".join([*prefix, *path]) or "(top level)", source=source)
