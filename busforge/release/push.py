"""Push a verified dataset to the Hugging Face Hub as one commit, tagged `v{version}`.

A release never changes under a pinned `revision=`: when the tag exists already, the files it
points at are compared with what would be pushed (sha256 for LFS files, git blob ids for the
rest); the same content is a no-op, different content is refused.

The Hub client is injected (anything with HfApi's methods), so tests run against a fake.
Files are passed to the commit by path, so shards stream from disk instead of sitting in memory.

Large pushes: each shard is uploaded on its own (`preupload_lfs_files`) before the one commit,
and a dropped connection is retried for that shard alone; objects already on the Hub are not sent
again (the Hub keeps uploaded LFS objects by hash), so rerunning a push that failed part-way sends
only the shards it had not finished. The tag is created only after the commit's tree has been
checked to hold exactly the verified files.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from busforge.dataset.manifest import MANIFEST, read_manifest
from busforge.dataset.verify import verify_dataset
from busforge.errors import BadInput

REPO_TYPE = "dataset"
CARD = "README.md"
EVALUATION = "evaluation"
# Hub metadata every busforge release card must carry (values are checked as subsets).
REQUIRED_TASKS = {"image-segmentation", "image-classification"}
REQUIRED_TAGS = {"medical", "ultrasound"}  # "synthetic" or "real" (or both) by content
HUB_MANAGED = {".gitattributes"}  # created by the Hub itself; not part of a release's content
SHARD_SUFFIX = ".parquet"
# Waits before retrying a shard whose upload failed on the network (then the push stops; rerun resumes).
RETRY_DELAYS_S = (2.0, 8.0, 30.0)
RETRIED_STATUS = {408, 429, 500, 502, 503, 504}


class PushInterrupted(RuntimeError):
    """The network failed during the upload; finished shards stay on the Hub for the next try."""


def _transient(err: BaseException) -> bool:
    """A dropped connection, a timeout or a server hiccup: worth retrying the same upload."""
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(err, HfHubHTTPError):
        response = getattr(err, "response", None)
        return getattr(response, "status_code", None) in RETRIED_STATUS
    names = {cls.__name__ for cls in type(err).__mro__}
    return isinstance(err, OSError | TimeoutError) or bool(names & {"TransportError", "TimeoutException"})


# Network failures by class name: huggingface_hub's HTTP client (httpx or its fork) and requests.
NETWORK_ERRORS = {
    "TransportError",
    "TimeoutException",
    "ConnectionError",
    "Timeout",
    "ProxyError",
    "SSLError",
}
HTTP_HINTS = {
    401: "check your token (`hf auth login`, or HF_TOKEN)",
    403: "check that your token may write to {repo_id} (a write token; the organisation's settings)",
    404: "check --repo-id {repo_id} and HF_ENDPOINT",
}


def network_failure(err: BaseException) -> bool:
    """The Hub could not be reached or the connection dropped (not a refusal, not a local file error)."""
    import socket

    names = {cls.__name__ for cls in type(err).__mro__}
    return isinstance(err, ConnectionError | TimeoutError | socket.gaierror) or bool(names & NETWORK_ERRORS)


def failure_hint(err: BaseException, repo_id: str) -> str:
    """What to check after a failed push: the token, the repository, or the network."""
    from huggingface_hub import constants

    status = getattr(getattr(err, "response", None), "status_code", None)
    if status in HTTP_HINTS:
        return HTTP_HINTS[status].format(repo_id=repo_id)
    return (
        f"check the network connection, the endpoint ({constants.ENDPOINT}; HF_ENDPOINT) and any proxy "
        "(HTTPS_PROXY), then run the same push again: shards already uploaded are not sent again"
    )


def upload_shards(api: Any, repo_id: str, branch: str, operations: list[Any]) -> None:
    """Upload each shard's content on its own, retrying network failures for that shard only."""
    from huggingface_hub import CommitOperationAdd

    for op in operations:
        if not (isinstance(op, CommitOperationAdd) and op.path_in_repo.endswith(SHARD_SUFFIX)):
            continue
        for attempt in range(len(RETRY_DELAYS_S) + 1):
            try:
                api.preupload_lfs_files(repo_id, additions=[op], repo_type=REPO_TYPE, revision=branch)
                break
            except Exception as err:
                if not _transient(err):
                    raise
                if attempt == len(RETRY_DELAYS_S):
                    raise PushInterrupted(
                        f"upload of {op.path_in_repo} failed {attempt + 1} times ({type(err).__name__}: {err}); "
                        "check the network connection (and HF_ENDPOINT or a proxy if you set one), then run "
                        "the same push again: shards already uploaded are not sent again"
                    ) from None
                time.sleep(RETRY_DELAYS_S[attempt])


@dataclass(frozen=True)
class PushOutcome:
    repo_id: str
    tag: str
    commit: str | None  # None when the release existed already with this content
    files: int
    up_to_date: bool


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _file_hashes(path: Path) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file, read in chunks."""
    size = path.stat().st_size
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % size)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha256.update(chunk)
            sha1.update(chunk)
    return sha256.hexdigest(), sha1.hexdigest()


def release_card(card_text: str, repo_id: str, tag: str) -> str:
    """The dataset card with a 'load this release' section; its Hub metadata checked first.

    Raises:
        BadInput: the card's YAML is missing or lacks the metadata a release needs.
    """
    from huggingface_hub import DatasetCard

    card = DatasetCard(card_text)
    data = card.data
    problems = []
    if not data.get("license"):
        problems.append("license is missing")
    if not REQUIRED_TASKS <= set(data.get("task_categories") or []):
        problems.append(f"task_categories must include {sorted(REQUIRED_TASKS)}")
    if not REQUIRED_TAGS <= set(data.get("tags") or []):
        problems.append(f"tags must include {sorted(REQUIRED_TAGS)}")
    if not data.get("size_categories"):
        problems.append("size_categories is missing")
    if problems:
        raise BadInput(
            f"{CARD}: card metadata: {'; '.join(problems)}; re-render the dataset with this busforge"
        )
    section = (
        f"\n## This release\n\n```python\nfrom datasets import load_dataset\n"
        f'ds = load_dataset("{repo_id}", revision="{tag}")\n```\n'
    )
    # After the title line of the body, so readers see how to pin the release first.
    head, sep, body = card.text.partition("\n\n")
    text = f"{head}{sep}{section.lstrip()}\n{body}" if sep else card.text + section
    card.text = text
    return str(card)


def release_files(dataset: Path, report: Path | None) -> dict[str, Path]:
    """Path in the repo -> local file: shards, manifest, resolved recipe, evaluation report if present."""
    manifest = read_manifest(dataset)
    files = {
        shard["file"]: dataset / shard["file"]
        for info in manifest["splits"].values()
        for shard in info["shards"]
    }
    files[MANIFEST] = dataset / MANIFEST
    files["recipe.yaml"] = dataset / "recipe.yaml"
    evaluation = report if report is not None else dataset / EVALUATION
    if report is not None and not report.is_dir():
        raise BadInput(f"{report}: --report: not a folder; give the folder busforge evaluate wrote")
    if evaluation.is_dir():
        for path in sorted(evaluation.iterdir()):
            if path.is_file() and path.suffix in (".json", ".html"):
                files[f"{EVALUATION}/{path.name}"] = path
    return files


def _remote_files(api: Any, repo_id: str, revision: str) -> dict[str, Any] | None:
    """Files at a revision: path -> RepoFile; None when the revision does not exist."""
    from huggingface_hub.errors import RevisionNotFoundError

    try:
        entries = api.list_repo_tree(repo_id, recursive=True, revision=revision, repo_type=REPO_TYPE)
        return {e.path: e for e in entries if hasattr(e, "blob_id") and e.path not in HUB_MANAGED}
    except RevisionNotFoundError:
        return None


def _same_content(remote: dict[str, Any], local: dict[str, tuple[str, str]]) -> list[str]:
    """Paths whose content differs between a remote revision and the files to push."""
    differ = sorted(set(remote) ^ set(local))
    for path in sorted(set(remote) & set(local)):
        sha256, sha1 = local[path]
        entry = remote[path]
        lfs = getattr(entry, "lfs", None)
        if lfs is not None:
            if getattr(lfs, "sha256", None) != sha256:
                differ.append(path)
        elif entry.blob_id != sha1:
            differ.append(path)
    return differ


def check_verified(dataset: Path) -> None:
    """Raise `BadInput` unless DATASET passes `busforge verify` (hashes, rows, schema, counts)."""
    problems = verify_dataset(dataset)
    if problems:
        raise BadInput(
            f"{dataset}: fails verification ({len(problems)} problem(s), first: {problems[0]}); "
            f"run `busforge verify {dataset}` and re-render before pushing"
        )


def push_dataset(
    dataset: Path,
    repo_id: str,
    *,
    api: Any,
    private: bool = False,
    revision: str | None = None,
    report: Path | None = None,
    verified: bool = False,
) -> PushOutcome:
    """Verify DATASET (unless `verified`: the caller just did), then push it to `repo_id` as one
    commit on `revision` tagged `v{version}`.

    Raises:
        BadInput: the dataset fails verification, its card lacks release metadata, or the tag
            exists with different content.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    if not verified:
        check_verified(dataset)
    manifest = read_manifest(dataset)
    tag = f"v{manifest['version']}"
    card = release_card((dataset / CARD).read_text(), repo_id, tag).encode()
    files = release_files(dataset, report)
    local = {path: _file_hashes(file) for path, file in files.items()}
    local[CARD] = (hashlib.sha256(card).hexdigest(), git_blob_sha1(card))

    api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
    tags = {ref.name for ref in api.list_repo_refs(repo_id, repo_type=REPO_TYPE).tags}
    if tag in tags:
        differ = _same_content(_remote_files(api, repo_id, tag) or {}, local)
        if differ:
            raise BadInput(
                f"{dataset}/{MANIFEST}: version: release {tag} of {repo_id} exists with different content "
                f"({len(differ)} file(s) differ, e.g. {differ[0]}); a release never changes: bump `version` "
                f"in the recipe and render again"
            )
        return PushOutcome(repo_id, tag, None, len(local), up_to_date=True)

    branch = revision or "main"
    if revision is not None:
        api.create_branch(repo_id, branch=revision, repo_type=REPO_TYPE, exist_ok=True)
    existing = _remote_files(api, repo_id, branch) or {}
    operations: list[Any] = [
        CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(file))
        for path, file in sorted(files.items())
    ]
    operations.append(CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=card))
    # Files of an earlier release that this one does not have (e.g. fewer shards) go in the same commit.
    operations += [CommitOperationDelete(path_in_repo=p) for p in sorted(set(existing) - set(local))]
    upload_shards(api, repo_id, branch, operations)
    info = api.create_commit(
        repo_id,
        operations,
        commit_message=f"{manifest['name']} {tag} (fingerprint {manifest['fingerprint']})",
        repo_type=REPO_TYPE,
        revision=branch,
    )
    # Tag only a commit that holds exactly the verified files (a release is forever).
    differ = _same_content(_remote_files(api, repo_id, info.oid) or {}, local)
    if differ:
        raise PushInterrupted(
            f"commit {info.oid} of {repo_id} does not hold the verified files ({len(differ)} differ, e.g. "
            f"{differ[0]}); not tagged {tag}; run the same push again"
        )
    api.create_tag(
        repo_id, tag=tag, revision=info.oid, repo_type=REPO_TYPE, tag_message=f"{manifest['name']} {tag}"
    )
    return PushOutcome(repo_id, tag, info.oid, len(local), up_to_date=False)


def hub_client(endpoint: str | None = None) -> Any:
    """A real HfApi: the endpoint from HF_ENDPOINT (or the given one), the token from the usual
    places (HF_TOKEN, `hf auth login`), resolved by huggingface_hub itself."""
    from huggingface_hub import HfApi, constants

    from busforge import __version__

    return HfApi(endpoint=endpoint or constants.ENDPOINT, token=None, library_name="busforge",
                 library_version=__version__)  # fmt: skip


def scrub(text: str, secret: str | None) -> str:
    """Remove a token from text before it is shown anywhere."""
    return text.replace(secret, "***") if secret else text
