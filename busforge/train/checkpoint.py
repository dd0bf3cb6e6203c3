"""busforge's training checkpoint folder: safetensors and JSON only, so resuming unpickles nothing.

    checkpoint-STEP/
      model.safetensors      the trained parameters (those that require a gradient), under the
                             unwrapped module's names
      optimizer.safetensors  AdamW's state per parameter, keyed by parameter NAME (not position):
                             `exp_avg/NAME`, `exp_avg_sq/NAME`, `step/NAME`; its metadata holds the
                             param groups (hyper-parameters and member names) as JSON
      trainer_state.json     format, step, loss history, run identity and, when fp16 mixed
                             precision uses one, the GradScaler's state as JSON numbers

No random-number state is saved: every draw of a training step comes from a generator seeded by
(seed, step, process, micro-batch) and the data order from (seed, position) (busforge.train.loop,
busforge.train.data); the models draw nothing from the global generators (no dropout), which the
resume tests check by starting the resumed run from scrambled global generators.

busforge 0.2.0 wrote checkpoints with `accelerate.save_state` (optimizer.bin, random_states_*.pkl,
scaler.pt: torch pickles); those are refused, never unpickled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from busforge.errors import BadInput

FORMAT = "busforge-checkpoint-1"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"
FILES = (MODEL_FILE, OPTIMIZER_FILE, STATE_FILE)
# What torch.save / pickle wrote in older checkpoints (accelerate's optimizer.bin, scaler.pt, ...).
PICKLE_SUFFIXES = (".bin", ".pkl", ".pickle", ".pt", ".pth", ".ckpt")
FRESH_START = "start afresh in another --out folder (or delete its checkpoints/)"


def pickle_files(folder: Path) -> list[str]:
    """Names of the files in `folder` that are pickles by their suffix (never opened)."""
    return sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)


def read_state(folder: Path) -> dict[str, Any]:
    """The checkpoint's trainer_state.json, after refusing pickles and other formats; raises BadInput."""
    if not folder.is_dir():
        raise BadInput(f"--resume {folder}: no such folder; use 'latest' or a checkpoint-N folder")
    pickles = pickle_files(folder)
    state_path = folder / STATE_FILE
    state: dict[str, Any] | None = None
    if state_path.is_file():
        try:
            state = json.loads(state_path.read_text())
        except (OSError, ValueError) as err:
            raise BadInput(f"{state_path}: unreadable ({err}); {FRESH_START}") from None
        if not isinstance(state, dict):
            raise BadInput(f"{state_path}: not a JSON object; {FRESH_START}")
    if state is not None and "format" not in state:  # what accelerate.save_state left in 0.2.0
        found = f" ({', '.join(pickles)})" if pickles else ""
        raise BadInput(
            f"{folder}: written by an older busforge in a pickle format{found}, which busforge no longer "
            f"unpickles; {FRESH_START}, or finish that run with busforge 0.2.0"
        )
    if pickles:
        raise BadInput(
            f"{folder / pickles[0]}: a pickle file in a checkpoint folder, which busforge never loads; "
            f"remove it if you trust the folder, or {FRESH_START}"
        )
    if state is None:
        raise BadInput(
            f"--resume {folder}: not a busforge checkpoint folder (no {STATE_FILE}); "
            "use 'latest' or a checkpoint-N folder"
        )
    if state.get("format") != FORMAT:
        raise BadInput(
            f"{state_path}: checkpoint format {state.get('format')!r}, this busforge reads {FORMAT!r}; "
            f"{FRESH_START}"
        )
    for name in (MODEL_FILE, OPTIMIZER_FILE):
        if not (folder / name).is_file():
            raise BadInput(f"{folder / name}: missing from the checkpoint folder; {FRESH_START}")
    return state


def write_checkpoint(
    folder: Path,
    params: Mapping[str, Any],
    optimizer: Any,
    state: dict[str, Any],
    scaler: Any = None,
) -> None:
    """Write the three files into `folder` (created), each flushed to disk.

    `params`: name -> trained parameter; `optimizer`: a torch optimizer over exactly those
    parameters; `state`: JSON the trainer keeps (step, history, identity); `scaler`: the GradScaler.
    """
    from safetensors.torch import save_file

    if not params:  # never write (and later resume) a checkpoint without its weights
        raise RuntimeError(f"{folder}: no trained parameter to checkpoint")
    folder.mkdir(parents=True, exist_ok=True)
    tensors, metadata = _optimizer_tensors(optimizer, params)
    save_file({name: _portable(p) for name, p in params.items()}, str(folder / MODEL_FILE))
    save_file(tensors, str(folder / OPTIMIZER_FILE), metadata=metadata)
    full = {**state, "format": FORMAT}
    if scaler is not None:
        full["grad_scaler"] = scaler.state_dict()
    (folder / STATE_FILE).write_text(json.dumps(full, indent=1, sort_keys=True))
    for name in FILES:
        with open(folder / name, "rb") as f:
            os.fsync(f.fileno())
    sync_folder(folder)


def load_checkpoint(
    folder: Path, params: Mapping[str, Any], optimizer: Any, scaler: Any = None, identity: dict | None = None
) -> dict[str, Any]:
    """Load the weights into `params` and the state into `optimizer` (and `scaler`); raises BadInput.
    Returns the trainer's state (step, history, ...). IDENTITY: the run's, which the checkpoint's
    must equal (checked, as everything else, before anything is loaded).

    The saved parameter names must be exactly those of `params`, with the same shapes and dtypes.
    A GradScaler starts afresh when the checkpoint has no state for it (it was saved without fp16).
    """
    import torch

    state = read_state(folder)
    if identity is not None:
        _check_identity(folder, state.get("identity", {}), identity)
    scaler_state = _scaler_state(folder, state) if scaler is not None else None
    weights = _read_tensors(folder / MODEL_FILE, "cpu")
    _check_names(folder / MODEL_FILE, weights.keys(), params.keys(), "trained parameter")
    for name, p in params.items():
        saved = weights[name]
        if saved.shape != p.shape or saved.dtype != p.dtype:
            raise BadInput(
                f"{folder / MODEL_FILE}: {name} is {saved.dtype} {tuple(saved.shape)}, the model's is "
                f"{p.dtype} {tuple(p.shape)}; resume with the same model, or {FRESH_START}"
            )
    optimizer_state = _optimizer_state(folder / OPTIMIZER_FILE, optimizer, params)
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(weights[name])
    optimizer.load_state_dict(optimizer_state)
    if scaler_state:
        scaler.load_state_dict(scaler_state)
    return state


def _check_identity(folder: Path, saved: dict[str, Any], now: dict[str, Any]) -> None:
    changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed[:3])
        raise BadInput(
            f"{folder}: checkpoint of a different run ({detail}); resume with the same settings "
            "or start afresh in another --out folder"
        )


SCALER_KEYS = ("scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker")


def _scaler_state(folder: Path, state: dict[str, Any]) -> dict[str, Any] | None:
    """The GradScaler's saved state, checked before anything is loaded (None or empty: none saved, as
    by a run without fp16 or a disabled scaler; the scaler then starts afresh)."""
    saved = state.get("grad_scaler")
    if not saved:
        return None
    if not isinstance(saved, dict) or any(
        not isinstance(saved.get(key), int | float) or isinstance(saved.get(key), bool) for key in SCALER_KEYS
    ):
        raise BadInput(
            f"{folder / STATE_FILE}: grad_scaler must hold the numbers {', '.join(SCALER_KEYS)}; "
            f"the file is damaged: resume from another checkpoint, or {FRESH_START}"
        )
    return saved


def sync_folder(folder: Path) -> None:
    """Make FOLDER's entries (files created or renamed in it) durable, as fsync does a file's data."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# -- the optimizer's state by parameter name ---------------------------------------------------------


def _optimizer_tensors(optimizer: Any, params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The optimizer's per-parameter tensors as `KEY/NAME`, and its param groups as JSON metadata."""
    import torch

    names = _names_by_id(optimizer, params)
    tensors: dict[str, Any] = {}
    groups = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if not isinstance(value, torch.Tensor):
                    raise TypeError(f"optimizer state {key!r} is a {type(value).__name__}, not a tensor")
                tensors[f"{key}/{names[id(p)]}"] = _portable(value)
        hyper = {k: v for k, v in group.items() if k != "params"}
        groups.append({**hyper, "params": [names[id(p)] for p in group["params"]]})
    return tensors, {"param_groups": json.dumps(groups), "optimizer": type(optimizer).__name__}


def _optimizer_state(path: Path, optimizer: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    """A `torch.optim.Optimizer.load_state_dict` dict for `optimizer`, from the name-keyed file."""
    from safetensors import safe_open

    tensors = _read_tensors(path, "cpu")
    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
        saved_groups = json.loads(metadata["param_groups"])
    except (KeyError, json.JSONDecodeError, TypeError) as err:
        raise BadInput(f"{path}: no readable param_groups metadata ({err}); {FRESH_START}") from None
    if metadata.get("optimizer") != type(optimizer).__name__:
        raise BadInput(
            f"{path}: state of a {metadata.get('optimizer')} optimizer, this run uses "
            f"{type(optimizer).__name__}; {FRESH_START}"
        )
    names = _names_by_id(optimizer, params)
    # torch numbers the parameters in the order of its groups; the file names them.
    current = optimizer.state_dict()
    index_of = {
        names[id(p)]: i
        for group, numbered in zip(optimizer.param_groups, current["param_groups"], strict=True)
        for p, i in zip(group["params"], numbered["params"], strict=True)
    }
    if len(saved_groups) != len(current["param_groups"]):
        raise BadInput(
            f"{path}: {len(saved_groups)} param group(s), the optimizer has {len(current['param_groups'])}; "
            f"{FRESH_START}"
        )
    groups = []
    for saved, now in zip(saved_groups, current["param_groups"], strict=True):
        members = {index_of.get(name, -1) for name in saved["params"]}
        if members != set(now["params"]):
            raise BadInput(f"{path}: its param groups hold other parameters than this run's; {FRESH_START}")
        hyper = {
            k: (tuple(v) if isinstance(now.get(k), tuple) else v) for k, v in saved.items() if k != "params"
        }
        groups.append({**now, **hyper, "params": now["params"]})
    per_param: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        what, _, name = key.partition("/")
        if name not in index_of:
            raise BadInput(f"{path}: state for {name!r}, which this run does not train; {FRESH_START}")
        if value.dim() and value.shape != params[name].shape:
            raise BadInput(
                f"{path}: {key} is {tuple(value.shape)}, the parameter is {tuple(params[name].shape)}; "
                f"{FRESH_START}"
            )
        per_param.setdefault(index_of[name], {})[what] = value
    return {"state": per_param, "param_groups": groups}


def _names_by_id(optimizer: Any, params: Mapping[str, Any]) -> dict[int, str]:
    names = {id(p): name for name, p in params.items()}
    unnamed = [p for g in optimizer.param_groups for p in g["params"] if id(p) not in names]
    if unnamed or len(names) != sum(len(g["params"]) for g in optimizer.param_groups):
        raise RuntimeError("the optimizer's parameters are not exactly the named trained parameters")
    return names


# -- files ------------------------------------------------------------------------------------------


def _portable(tensor: Any) -> Any:
    """A CPU, contiguous, detached tensor as safetensors writes it."""
    return tensor.detach().to("cpu").contiguous()


def _read_tensors(path: Path, device: str) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BadInput(f"{path}: not a readable safetensors file ({first[:160]}); {FRESH_START}") from None


def _check_names(path: Path, saved: Any, wanted: Any, what: str) -> None:
    missing, extra = sorted(set(wanted) - set(saved)), sorted(set(saved) - set(wanted))
    if missing or extra:
        detail = f"{len(missing)} {what}(s) missing (e.g. {missing[0]})" if missing else ""
        if extra:
            detail += f"{'; ' if detail else ''}{len(extra)} not in this run (e.g. {extra[0]})"
        raise BadInput(f"{path}: {detail}; resume with the same model and settings, or {FRESH_START}")
