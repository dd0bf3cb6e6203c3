"""busforge push: verified, one-commit, tagged and immutable releases, against a faithful fake Hub."""

from __future__ import annotations

import hashlib
import importlib
import itertools
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, DatasetCard
from huggingface_hub.errors import HfHubHTTPError, RevisionNotFoundError
from huggingface_hub.hf_api import CommitInfo, GitRefInfo, GitRefs, RepoFile
from typer.testing import CliRunner

from busforge.cli import app
from busforge.errors import BadInput
from busforge.executors.local import run_render
from busforge.recipe import load_recipe
from busforge.release import push as release
from busforge.release.push import git_blob_sha1, push_dataset

REPO = Path(__file__).resolve().parents[1]
TOKEN = "hf_secretTOKEN1234567890"
LFS_SUFFIXES = (".parquet",)  # what the Hub's default .gitattributes stores in LFS (among others)


def _http_error(message: str, status: int, cls: type[HfHubHTTPError] = HfHubHTTPError) -> HfHubHTTPError:
    # The HTTP client huggingface_hub builds its errors on (httpx or its fork), whichever is installed.
    httpx = importlib.import_module(HfHubHTTPError.__mro__[1].__module__.split(".")[0])
    response = httpx.Response(status, request=httpx.Request("POST", "https://huggingface.co/api"))
    return cls(message, response=response)


class FakeHub:
    """In-memory Hub with HfApi's signatures: repos, branches, commits, tags (immutable), LFS files."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.repos: dict[str, dict[str, Any]] = {}
        self._oids = (hashlib.sha1(str(i).encode()).hexdigest() for i in itertools.count())
        self.fail_commit_with: str | None = None
        # LFS objects the Hub holds (by sha256; they outlive failed commits), and each upload made.
        self.lfs: set[str] = set()
        self.uploads: list[str] = []
        self.drop_after: int | None = None  # the connection drops once this many uploads are done ...
        self.drops = 0  # ... this many times

    def _upload(self, op: Any) -> None:
        """Send one LFS file's content unless the Hub has it already (what the real client does)."""
        data = Path(op.path_or_fileobj).read_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        if sha256 in self.lfs:
            return
        if self.drops and self.drop_after is not None and len(self.uploads) >= self.drop_after:
            self.drops -= 1
            raise ConnectionResetError(104, "Connection reset by peer")
        self.lfs.add(sha256)
        self.uploads.append(op.path_in_repo)

    def preupload_lfs_files(self, repo_id: str, additions: Any, *, repo_type: str | None = None,
                            revision: str | None = None, **_: Any) -> None:  # fmt: skip
        self._record("preupload_lfs_files", repo_id=repo_id, revision=revision)
        self._repo(repo_id, repo_type)
        for op in additions:
            if op.path_in_repo.endswith(LFS_SUFFIXES):
                self._upload(op)

    def _record(self, name: str, **kwargs: Any) -> None:
        self.calls.append((name, kwargs))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def _repo(self, repo_id: str, repo_type: str | None) -> dict[str, Any]:
        assert repo_type == "dataset", "busforge pushes dataset repositories only"
        if repo_id not in self.repos:
            raise _http_error(f"404 repository {repo_id} not found", 404)
        return self.repos[repo_id]

    def _resolve(self, repo: dict[str, Any], revision: str | None) -> str:
        revision = revision or "main"
        for refs in (repo["branches"], repo["tags"]):
            if revision in refs:
                return refs[revision]
        if revision in repo["commits"]:
            return revision
        raise _http_error(f"404 revision {revision} not found", 404, RevisionNotFoundError)

    def create_repo(self, repo_id: str, *, repo_type: str | None = None, private: bool | None = None,
                    exist_ok: bool = False, **_: Any) -> str:  # fmt: skip
        self._record("create_repo", repo_id=repo_id, repo_type=repo_type, private=private, exist_ok=exist_ok)
        assert repo_type == "dataset"
        if repo_id in self.repos:
            if not exist_ok:
                raise _http_error("409 repository exists", 409)
            return f"https://huggingface.co/datasets/{repo_id}"
        oid = next(self._oids)
        self.repos[repo_id] = {
            "private": bool(private),
            "commits": {oid: {".gitattributes": b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"}},
            "branches": {"main": oid},
            "tags": {},
        }
        return f"https://huggingface.co/datasets/{repo_id}"

    def list_repo_refs(self, repo_id: str, *, repo_type: str | None = None, **_: Any) -> GitRefs:
        self._record("list_repo_refs", repo_id=repo_id)
        repo = self._repo(repo_id, repo_type)
        refs = [GitRefInfo(name=n, ref=f"refs/tags/{n}", target_commit=c) for n, c in repo["tags"].items()]
        branches = [
            GitRefInfo(name=n, ref=f"refs/heads/{n}", target_commit=c) for n, c in repo["branches"].items()
        ]
        return GitRefs(branches=branches, converts=[], tags=refs)

    def list_repo_tree(self, repo_id: str, path_in_repo: str | None = None, *, recursive: bool = False,
                       revision: str | None = None, repo_type: str | None = None, **_: Any) -> list[RepoFile]:  # fmt: skip
        self._record("list_repo_tree", repo_id=repo_id, revision=revision, recursive=recursive)
        assert recursive, "busforge compares whole trees"
        repo = self._repo(repo_id, repo_type)
        files = repo["commits"][self._resolve(repo, revision)]
        entries = []
        for path, data in sorted(files.items()):
            lfs = None
            if path.endswith(LFS_SUFFIXES):
                lfs = {"size": len(data), "oid": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
            entries.append(RepoFile(path=path, size=len(data), oid=git_blob_sha1(data), lfs=lfs))
        return entries

    def create_branch(self, repo_id: str, *, branch: str, revision: str | None = None,
                      repo_type: str | None = None, exist_ok: bool = False, **_: Any) -> None:  # fmt: skip
        self._record("create_branch", repo_id=repo_id, branch=branch)
        repo = self._repo(repo_id, repo_type)
        if branch in repo["branches"]:
            if not exist_ok:
                raise _http_error("409 branch exists", 409)
            return
        repo["branches"][branch] = self._resolve(repo, revision)

    def create_commit(self, repo_id: str, operations: Any, *, commit_message: str,
                      repo_type: str | None = None, revision: str | None = None, **_: Any) -> CommitInfo:  # fmt: skip
        operations = list(operations)
        self._record("create_commit", repo_id=repo_id, operations=operations, revision=revision,
                     commit_message=commit_message)  # fmt: skip
        if self.fail_commit_with:
            raise _http_error(self.fail_commit_with, 401)
        repo = self._repo(repo_id, repo_type)
        branch = revision or "main"
        if branch not in repo["branches"]:
            raise _http_error(f"404 branch {branch} not found", 404, RevisionNotFoundError)
        files = dict(repo["commits"][repo["branches"][branch]])
        for op in operations:  # the client uploads what was not pre-uploaded, then commits
            if isinstance(op, CommitOperationAdd) and op.path_in_repo.endswith(LFS_SUFFIXES):
                self._upload(op)
        for op in operations:
            if isinstance(op, CommitOperationAdd):
                source = op.path_or_fileobj
                files[op.path_in_repo] = (
                    Path(source).read_bytes() if isinstance(source, str | Path) else source
                )
            elif isinstance(op, CommitOperationDelete):
                if op.path_in_repo not in files:
                    raise _http_error(f"404 {op.path_in_repo} not found", 404)
                del files[op.path_in_repo]
        oid = next(self._oids)
        repo["commits"][oid] = files
        repo["branches"][branch] = oid
        url = f"https://huggingface.co/datasets/{repo_id}/commit/{oid}"
        return CommitInfo(commit_url=url, commit_message=commit_message, commit_description="", oid=oid)

    def create_tag(self, repo_id: str, *, tag: str, revision: str | None = None, repo_type: str | None = None,
                   exist_ok: bool = False, **_: Any) -> None:  # fmt: skip
        self._record("create_tag", repo_id=repo_id, tag=tag, revision=revision)
        repo = self._repo(repo_id, repo_type)
        if tag in repo["tags"]:
            if not exist_ok:  # the Hub refuses to move a tag: a release is immutable
                raise _http_error(f"409 tag {tag} already exists", 409)
            return
        repo["tags"][tag] = self._resolve(repo, revision)

    def files_at(self, repo_id: str, revision: str) -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return repo["commits"][self._resolve(repo, revision)]


def render(out: Path, *overrides: str) -> Path:
    recipe = load_recipe(
        REPO / "recipes" / "demo.yaml", ["count=12", "output.rows_per_shard=6", "image_size=64", *overrides]
    )
    run_render(recipe, out_dir=out, quiet=True)
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp("push") / "demo")


@pytest.fixture
def dataset(tmp_path: Path, rendered: Path) -> Path:
    copy = tmp_path / "demo"
    shutil.copytree(rendered, copy)
    return copy


def test_push_is_one_commit_of_the_whole_dataset_then_a_tag(dataset: Path) -> None:
    hub = FakeHub()
    outcome = push_dataset(dataset, "user/demo", api=hub, private=True)
    assert not outcome.up_to_date
    assert hub.names().count("create_commit") == 1
    create_repo = dict(hub.calls)["create_repo"]
    assert create_repo == {"repo_id": "user/demo", "repo_type": "dataset", "private": True, "exist_ok": True}
    commit = dict(hub.calls)["create_commit"]
    shards = sorted(p.relative_to(dataset).as_posix() for p in (dataset / "data").glob("*.parquet"))
    paths = {op.path_in_repo for op in commit["operations"]}
    assert paths == {*shards, "README.md", "busforge.json", "recipe.yaml"}
    for op in commit["operations"]:  # shards are streamed from disk: passed as paths, not bytes
        if op.path_in_repo.endswith(".parquet"):
            assert isinstance(op.path_or_fileobj, str)
    assert hub.names().index("create_tag") > hub.names().index("create_commit")
    assert dict(hub.calls)["create_tag"] == {
        "repo_id": "user/demo",
        "tag": "v1.0.0",
        "revision": outcome.commit,
    }
    files = hub.files_at("user/demo", "v1.0.0")
    for shard in shards:
        assert files[shard] == (dataset / shard).read_bytes()


def test_pushed_card_is_valid_hub_metadata_and_says_how_to_load_the_release(dataset: Path) -> None:
    hub = FakeHub()
    push_dataset(dataset, "user/demo", api=hub)
    card = DatasetCard(hub.files_at("user/demo", "v1.0.0")["README.md"].decode())
    data = card.data.to_dict()
    assert data["license"]
    assert {"image-segmentation", "image-classification"} <= set(data["task_categories"])
    assert {"medical", "ultrasound", "synthetic"} <= set(data["tags"])
    assert data["size_categories"] == ["n<1K"]
    assert 'load_dataset("user/demo", revision="v1.0.0")' in card.text


def test_same_release_again_is_a_no_op(dataset: Path) -> None:
    hub = FakeHub()
    push_dataset(dataset, "user/demo", api=hub)
    hub.calls.clear()
    outcome = push_dataset(dataset, "user/demo", api=hub)
    assert outcome.up_to_date and outcome.commit is None
    assert "create_commit" not in hub.names() and "create_tag" not in hub.names()


def test_same_version_with_other_content_is_refused(tmp_path: Path, dataset: Path) -> None:
    hub = FakeHub()
    push_dataset(dataset, "user/demo", api=hub)
    before = hub.files_at("user/demo", "v1.0.0")
    changed = render(tmp_path / "changed", "seed=99")  # same version 1.0.0, other images
    hub.calls.clear()
    with pytest.raises(BadInput, match="release v1.0.0 of user/demo exists with different content"):
        push_dataset(changed, "user/demo", api=hub)
    assert "create_commit" not in hub.names()
    assert hub.files_at("user/demo", "v1.0.0") == before


def test_a_new_version_replaces_stale_files_in_the_same_commit(tmp_path: Path, dataset: Path) -> None:
    hub = FakeHub()
    push_dataset(dataset, "user/demo", api=hub)
    smaller = render(tmp_path / "v2", "version=2.0.0", "output.rows_per_shard=12")
    outcome = push_dataset(smaller, "user/demo", api=hub)
    assert outcome.tag == "v2.0.0"
    v1, v2 = hub.files_at("user/demo", "v1.0.0"), hub.files_at("user/demo", "v2.0.0")
    assert sorted(p for p in v1 if p.startswith("data/")) == [
        "data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"
    ]  # fmt: skip
    assert sorted(p for p in v2 if p.startswith("data/")) == ["data/train-00000-of-00001.parquet"]


def test_a_dataset_that_fails_verify_is_never_pushed(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shard = next((dataset / "data").glob("*.parquet"))
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    hub = FakeHub()
    with pytest.raises(BadInput, match="fails verification"):
        push_dataset(dataset, "user/demo", api=hub)
    assert hub.calls == []
    # The CLI says so before it looks for a token (none is set here).
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(dataset / "no-token"))
    result = CliRunner().invoke(app, ["push", str(dataset), "--repo-id", "user/demo"])
    assert isinstance(result.exception, BadInput) and "fails verification" in str(result.exception)


def test_evaluation_report_and_branch_go_into_the_release(dataset: Path) -> None:
    (dataset / "evaluation").mkdir()
    (dataset / "evaluation" / "metrics.json").write_text('{"fid": 1.0}\n')
    (dataset / "evaluation" / "report.html").write_text("<html></html>\n")
    hub = FakeHub()
    push_dataset(dataset, "user/demo", api=hub, revision="releases")
    assert dict(hub.calls)["create_commit"]["revision"] == "releases"
    files = hub.files_at("user/demo", "v1.0.0")
    assert files["evaluation/metrics.json"] == b'{"fid": 1.0}\n'
    assert "evaluation/report.html" in files
    assert hub.repos["user/demo"]["branches"]["releases"] == hub.repos["user/demo"]["tags"]["v1.0.0"]


def test_cli_push_exit_codes_and_the_token_never_shows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, dataset: Path
) -> None:
    hub = FakeHub()
    monkeypatch.setattr(release, "hub_client", lambda endpoint=None: hub)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    runner = CliRunner()
    ok = runner.invoke(app, ["push", str(dataset), "--repo-id", "user/demo"])
    assert ok.exit_code == 0, ok.output
    assert "user/demo@v1.0.0: pushed" in ok.output and TOKEN not in ok.output
    again = runner.invoke(app, ["push", str(dataset), "--repo-id", "user/demo"])
    assert again.exit_code == 0 and "nothing to do" in again.output

    failing = FakeHub()
    failing.fail_commit_with = f"401 Unauthorized: invalid token {TOKEN}"
    monkeypatch.setattr(release, "hub_client", lambda endpoint=None: failing)
    refused = runner.invoke(app, ["push", str(dataset), "--repo-id", "user/other"])
    assert refused.exit_code == 1
    assert "401" in refused.output and TOKEN not in refused.output
    assert "check your token (`hf auth login`, or HF_TOKEN)" in refused.output


def test_cli_push_without_network_says_what_to_check(monkeypatch: pytest.MonkeyPatch, dataset: Path) -> None:
    httpx = importlib.import_module(HfHubHTTPError.__mro__[1].__module__.split(".")[0])

    class Unreachable(FakeHub):
        def create_repo(self, *args: Any, **kwargs: Any) -> Any:
            raise httpx.ConnectError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(release, "hub_client", lambda endpoint=None: Unreachable())
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    result = CliRunner().invoke(app, ["push", str(dataset), "--repo-id", "user/demo"])
    assert result.exit_code == 1
    assert (
        "error: could not reach the Hub (ConnectError: [Errno -3] Temporary failure in name resolution)"
        in (result.output)
    )
    assert "check the network connection, the endpoint (" in result.output and "HTTPS_PROXY" in result.output


def test_cli_push_of_a_changed_release_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, dataset: Path
) -> None:
    """Through the real entry point: one line on stderr, exit 2, no traceback, no token."""
    from busforge.cli import main

    hub = FakeHub()
    push_dataset(dataset, "user/demo", api=hub)
    changed = render(tmp_path / "changed", "seed=98")
    monkeypatch.setattr(release, "hub_client", lambda endpoint=None: hub)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(sys, "argv", ["busforge", "push", str(changed), "--repo-id", "user/demo"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert "exists with different content" in captured.err and "Traceback" not in captured.err
    assert len(captured.err.strip().splitlines()) == 1 and TOKEN not in captured.err + captured.out


def test_cli_push_without_a_token_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, dataset: Path
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no stored login there
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.setattr(release, "hub_client", lambda endpoint=None: pytest.fail("no client without a token"))
    result = CliRunner().invoke(app, ["push", str(dataset), "--repo-id", "user/demo"])
    assert result.exit_code != 0
    assert isinstance(result.exception, BadInput) and "HF_TOKEN" in str(result.exception)


def test_real_hfapi_uses_the_given_endpoint_and_the_usual_token_sources(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from huggingface_hub import HfApi, constants
    from huggingface_hub.utils import get_token

    api = release.hub_client("https://hub.example.org")
    assert isinstance(api, HfApi)
    assert api.endpoint == "https://hub.example.org"
    assert api.token is None  # resolved by huggingface_hub: HF_TOKEN, then the stored login
    assert release.hub_client().endpoint == constants.ENDPOINT
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert get_token() == TOKEN
    assert release.scrub(f"bad {TOKEN}", TOKEN) == "bad ***"


def _shards(dataset: Path) -> list[str]:
    return sorted(p.relative_to(dataset).as_posix() for p in (dataset / "data").glob("*.parquet"))


def _tagged_files_are_the_dataset(hub: FakeHub, dataset: Path, tag: str) -> None:
    files = hub.files_at("user/demo", tag)
    assert set(files) - {".gitattributes", "README.md"} == {*_shards(dataset), "busforge.json", "recipe.yaml"}
    for path in _shards(dataset):
        assert files[path] == (dataset / path).read_bytes()


def test_a_dropped_connection_mid_upload_is_retried_without_resending_finished_shards(
    dataset: Path, monkeypatch
) -> None:
    monkeypatch.setattr(release, "RETRY_DELAYS_S", (0.0, 0.0, 0.0))
    hub = FakeHub()
    hub.drop_after, hub.drops = 1, 2  # after the first shard, two drops in a row
    outcome = push_dataset(dataset, "user/demo", api=hub)
    assert len(_shards(dataset)) >= 2
    assert sorted(hub.uploads) == _shards(dataset)  # each shard sent exactly once
    assert hub.names().count("create_commit") == 1
    _tagged_files_are_the_dataset(hub, dataset, outcome.tag)


def test_a_push_stopped_by_the_network_resumes_with_the_unfinished_shards(dataset: Path, monkeypatch) -> None:
    monkeypatch.setattr(release, "RETRY_DELAYS_S", (0.0,))
    hub = FakeHub()
    hub.drop_after, hub.drops = 1, 10  # the network stays down after one shard
    with pytest.raises(release.PushInterrupted, match=r"check the network .*run the same push again"):
        push_dataset(dataset, "user/demo", api=hub)
    assert hub.uploads == _shards(dataset)[:1]
    assert "create_commit" not in hub.names() and not hub.repos["user/demo"]["tags"]  # nothing released

    hub.drops = 0  # back online: the same push sends only what is missing
    outcome = push_dataset(dataset, "user/demo", api=hub)
    assert hub.uploads == _shards(dataset)  # the first shard was not sent again
    _tagged_files_are_the_dataset(hub, dataset, outcome.tag)


def test_a_commit_that_does_not_hold_the_verified_files_is_not_tagged(dataset: Path) -> None:
    class LossyHub(FakeHub):
        def create_commit(self, repo_id: str, operations: Any, **kwargs: Any) -> CommitInfo:
            ops = [op for op in operations if op.path_in_repo != "recipe.yaml"]
            return super().create_commit(repo_id, ops, **kwargs)

    hub = LossyHub()
    with pytest.raises(
        release.PushInterrupted, match=r"does not hold the verified files .*recipe\.yaml.*not tagged"
    ):
        push_dataset(dataset, "user/demo", api=hub)
    assert not hub.repos["user/demo"]["tags"]
