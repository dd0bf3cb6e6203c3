"""`--quiet` for the libraries busforge drives: diffusers, transformers, peft and huggingface_hub.

Their progress bars and notices bypass busforge's own output, so a quiet command asks each library
to keep still when it is loaded (`apply()`, called right after the heavy imports).
"""

from __future__ import annotations

import os
import warnings

_quiet = False


def set_quiet(quiet: bool = True) -> None:
    """Make this process quiet; libraries imported later read the environment, loaded ones `apply()`."""
    global _quiet
    _quiet = quiet
    if quiet:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        os.environ["DIFFUSERS_VERBOSITY"] = "error"
        os.environ["TRANSFORMERS_VERBOSITY"] = "error"


def is_quiet() -> bool:
    return _quiet


def apply() -> None:
    """Silence the progress bars and warnings of diffusers, transformers and peft (when quiet)."""
    if not _quiet:
        return
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging
    from huggingface_hub.utils import disable_progress_bars

    for logging in (diffusers_logging, transformers_logging):
        logging.set_verbosity_error()
        logging.disable_progress_bar()
    disable_progress_bars()
    for module in ("diffusers", "transformers", "peft", "huggingface_hub", "accelerate"):
        warnings.filterwarnings("ignore", module=rf"{module}(\.|$)")
