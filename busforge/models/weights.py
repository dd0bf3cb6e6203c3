"""Where model weights come from, and their identity for the dataset fingerprint.

A model reference is a local folder or a Hugging Face Hub id (optionally `id@revision`). Local
folders are identified by the sha256 of their weight and config files (cached by path, size and
mtime, so multi-GB checkpoints are hashed once); Hub models by id + the commit they resolve to.
With `HF_HUB_OFFLINE=1` or no network (found in one quick connect, not after the client's retries),
a Hub model that is not in the local cache is a `BadInput` raised before any rendering starts,
naming the model and how to get it; a missing local ControlNet or LoRA folder names the
`busforge train` command that makes it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from busforge.cache import cache_dir
from busforge.dataset.hashing import sha256_file
from busforge.errors import BadInput

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Files that decide what a model computes; READMEs, images and optimizer states do not.
IDENTITY_SUFFIXES = (".safetensors", ".json", ".txt")
HASH_CACHE_VERSION = 1
TRAINING_CHECKPOINTS = "checkpoints"  # busforge.train.loop writes OUT/checkpoints/
HUB_PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class ModelSource:
    """A resolved model: `from_pretrained(pretrained, revision=revision)` loads it; `identity` goes
    into the fingerprint."""

    key: str  # recipe key path, e.g. "renderer.base"
    ref: str  # as written in the recipe
    pretrained: str  # local folder, or Hub id
    revision: str | None  # the Hub commit, pinned so that what was identified is what loads
    identity: dict[str, Any]


def _cache_file() -> Path:
    return cache_dir() / "weight-hashes.json"


def _load_cache() -> dict[str, Any]:
    try:
        data = json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return data.get("files", {}) if data.get("version") == HASH_CACHE_VERSION else {}


def _save_cache(files: dict[str, Any]) -> None:
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": HASH_CACHE_VERSION, "files": files}, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs re-hashing next time


def file_sha256(path: Path, cache: dict[str, Any]) -> str:
    """sha256 of a file, reusing the cached digest while its size and mtime are unchanged."""
    stat = path.stat()
    key = str(path.resolve())
    entry = cache.get(key)
    if entry and entry["size"] == stat.st_size and entry["mtime_ns"] == stat.st_mtime_ns:
        return entry["sha256"]
    digest = sha256_file(path)
    cache[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    return digest


def _skipped(parts: tuple[str, ...]) -> bool:
    """Files that are never loaded: the Hub client's `.cache/`, and the training `checkpoints/`
    kept for resuming (deleting old ones must not change what the folder's weights are)."""
    return ".cache" in parts or parts[0] == TRAINING_CHECKPOINTS


def folder_sha256(folder: Path) -> str:
    """One digest over the relative paths and sha256 of the folder's weight and config files.

    Where the folder lives does not enter it: the same weights copied elsewhere keep their identity.
    """
    cache = _load_cache()
    before = dict(cache)
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix in IDENTITY_SUFFIXES and not _skipped(p.relative_to(folder).parts)
    )
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(folder).as_posix()}\0{file_sha256(path, cache)}\n".encode())
    if cache != before:
        _save_cache(cache)
    return digest.hexdigest()


def split_revision(ref: str) -> tuple[str, str | None]:
    """`owner/name@rev` -> ("owner/name", "rev"); no `@` -> (ref, None)."""
    if "@" in ref and not Path(ref).exists():
        repo, _, revision = ref.rpartition("@")
        return repo, revision or None
    return ref, None


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


@functools.cache
def hub_unreachable() -> str | None:
    """Why the Hub cannot be reached (no DNS, no route), or None; one quick TCP connect per process.

    Without it, a machine with no network spends the client's timeouts and retries (tens of seconds)
    before saying so. Behind an HTTP(S) proxy the direct connect means nothing, so it is skipped.
    """
    if any(
        os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")
    ):
        return None
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=HUB_PROBE_TIMEOUT_S).close()
    except OSError as err:
        return f"cannot reach {url.hostname}:{port} ({err.strerror or type(err).__name__})"
    return None


def how_to_make(key: str, ref: str) -> str:
    """The command that creates a missing model folder: training for the ControlNet and LoRAs."""
    if key == "renderer.controlnet":
        return f"train it with `busforge train controlnet data/real/NAME --out {ref}`"
    if key.startswith("renderer.lora."):
        domain = key.removeprefix("renderer.lora.")
        return f"train it with `busforge train lora data/real/NAME --domain {domain} --out {ref}`"
    return (
        f"download one with `hf download stable-diffusion-v1-5/stable-diffusion-v1-5 --local-dir {ref}` "
        "(or write a tiny test model with `busforge models tiny DIR`)"
    )


def hf_download(repo_id: str, revision: str | None) -> str:
    return f"`hf download {repo_id}" + (f" --revision {revision}`" if revision else "`")


def hub_id(ref: str) -> str | None:
    """The Hub id a model reference names (`owner/name[@revision]` that is no local path), else None."""
    if Path(ref).expanduser().exists():
        return None
    repo_id = split_revision(ref)[0]
    return repo_id if HUB_ID.match(repo_id) else None


def resolve_model(ref: str, key: str, need: str) -> ModelSource:
    """Find a model given as a local folder or a Hub id; fail early and clearly if it is not there.

    Args:
        ref: the recipe's value (a folder, `owner/name` or `owner/name@revision`).
        key: its recipe key path for error messages, e.g. "renderer.controlnet".
        need: a file that must exist in the folder (e.g. "model_index.json"), to catch wrong folders.
    """
    local = Path(ref).expanduser()
    if hub_id(ref) is None:
        if not local.is_dir():
            raise BadInput(
                f"no folder {ref!r}; {how_to_make(key, ref)}, or give a Hub id (owner/name)", key=key
            )
        if not (local / need).is_file():
            raise BadInput(f"{local} has no {need}; give a folder in the diffusers layout", key=key)
        return ModelSource(key, ref, str(local.resolve()), None, {"sha256": folder_sha256(local)})
    return _resolve_hub(ref, key, need)


def _not_found(key: str, ref: str, repo_id: str, revision: str | None, why: str) -> BadInput:
    """`models/controlnet-busi` reads as a Hub id too: say what either reading needs."""
    get = hf_download(repo_id, revision)
    if key == "renderer.base":
        return BadInput(
            f"model {ref!r} is not in the local Hugging Face cache and {why}; "
            f"run {get} where there is network, or set {key} to a local folder",
            key=key,
        )
    return BadInput(
        f"no folder {ref!r}; {how_to_make(key, ref)} "
        f"(a Hub model of that id is not in the local cache and {why}; {get} gets it)",
        key=key,
    )


def _resolve_hub(ref: str, key: str, need: str) -> ModelSource:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo_id, revision = split_revision(ref)
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except LocalEntryNotFoundError:
        if hub_offline():
            raise _not_found(key, ref, repo_id, revision, "HF_HUB_OFFLINE=1") from None
        unreachable = hub_unreachable()
        if unreachable is not None:
            raise _not_found(key, ref, repo_id, revision, f"the Hub is offline here: {unreachable}") from None
        try:
            folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=["*.json", "*.txt"]))
        except Exception as err:  # private repo, typo, network dropped: all mean "cannot get it"
            raise _not_found(
                key,
                ref,
                repo_id,
                revision,
                f"the Hub did not give it ({type(err).__name__}: check the id, "
                "your token for a private or gated model with `hf auth login`, and the network)",
            ) from None
    if not (folder / need).is_file():
        raise BadInput(f"Hub model {repo_id!r} has no {need}; is it a diffusers model?", key=key)
    # Snapshot folders are named by the commit they hold: the exact revision for reproduction.
    return ModelSource(key, ref, repo_id, folder.name, {"hub_id": repo_id, "revision": folder.name})
