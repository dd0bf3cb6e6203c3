"""Errors a user can cause, reported as one line with exit code 2."""


class BadInput(Exception):
    """Bad recipe, option, file or argument: one line naming the file, the key and the fix."""


def naming_file(err: BadInput, source: str) -> BadInput:
    """Renderers report option errors as `recipe: renderer.<key>: ...`, not knowing the file:
    the same error with the recipe's file name in place of `recipe`."""
    message = str(err)
    return BadInput(source + message.removeprefix("recipe")) if message.startswith("recipe:") else err
