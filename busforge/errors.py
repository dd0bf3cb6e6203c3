"""Errors a user can cause, reported as one line with exit code 2."""

from __future__ import annotations


class BadInput(Exception):
    """Bad recipe, option, file or argument: one line naming the file, the key and the fix.

    `BadInput(message)` when the message already says where. Code that knows the key but not the
    file (a renderer validating its options, a model resolver) passes `key=`; the caller that knows
    the file attaches it with `with_source`. Until then the line reads `recipe: <key>: ...`.
    """

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key
        self.source = source

    def __str__(self) -> str:
        if self.key is None:
            return self.message if self.source is None else f"{self.source}: {self.message}"
        return f"{self.source or 'recipe'}: {self.key}: {self.message}"

    def with_source(self, source: str) -> BadInput:
        """The same error naming `source`, where it names a key but not yet its file."""
        if self.key is None or self.source is not None:
            return self
        return BadInput(self.message, key=self.key, source=source)
