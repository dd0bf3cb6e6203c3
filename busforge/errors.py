"""Errors a user can cause, reported as one line with exit code 2."""


class BadInput(Exception):
    """Bad recipe, option, file or argument: one line naming the file, the key and the fix."""
