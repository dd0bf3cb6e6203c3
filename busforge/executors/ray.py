"""Render a prepared run on a Ray cluster: Ray decides only who renders which shard.

Planning, the staging folder, the shard writer and the finalize are the local engine's
(busforge.planning, busforge.dataset.output), so either engine writes the same bytes. Workers are
plain Ray actors, not Ray Data: each loads the renderer once and renders whole shards of the plan
straight into the staging folder through `write_shard`, returning only the shard's record, so no
image goes through the object store and Ray's own file naming and ordering never touch the output.
The driver hands out only the shards the staging folder does not already hold as done; a shard
whose actor died is handed to a fresh actor (bounded retries). The staging folder must be on a
filesystem every node sees: each actor checks it at start-up.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from busforge.dataset.output import open_run, write_shard
from busforge.dataset.writer import ShardRecord, Staging, shard_path
from busforge.errors import BadInput
from busforge.executors.local import RenderOutcome
from busforge.planning import PlanHints, ShardJob, build_renderer, finish, prepare, real_batches
from busforge.recipe import Recipe

MAX_TRIES = 3  # per shard: a shard whose actor dies this many times fails the run
MISSING_RAY = "--engine ray needs Ray, an optional extra: pip install busforge[ray]"


@dataclass(frozen=True)
class RayOutcome(RenderOutcome):
    nodes: dict[str, str] = field(default_factory=dict)  # shard file -> Ray node id that rendered it
    retried: int = 0  # shards handed out again after their actor died


def import_ray():
    try:
        import ray
    except ImportError:
        raise BadInput(MISSING_RAY) from None
    return ray


class ShardRenderer:
    """One Ray actor: loads the renderer once, renders whole shards into the staging folder."""

    def __init__(
        self, recipe: Recipe, out_dir: str, probe: str, threads: int, identity: dict, hints: PlanHints
    ) -> None:
        from busforge.executors.local import RowSource

        self.staging = Staging(Path(out_dir))
        self.probe = probe
        self.recipe = recipe
        self.source = None
        self.mismatch = False
        self.refused: str | None = None  # said by the first shard: raised here, Ray would only retry
        try:
            renderer = build_renderer(recipe, hints)
        except BadInput as err:  # e.g. no GPU on this node for a large run
            self.refused = str(err)
            return
        self.mismatch = renderer.identity() != identity  # e.g. another device resolved on this node
        self.source = None if self.mismatch else RowSource(recipe, renderer, workers=1, threads=threads)

    def _check(self) -> None:
        where = f"Ray node {self.node_id()} ({os.uname().nodename})"
        if not (self.staging.dir / self.probe).is_file():
            raise SharedFilesystemError(
                f"{self.staging.dir}: not visible from {where}; "
                "--out must be on a filesystem every node of the cluster sees"
            )
        if self.refused is not None:
            raise SharedFilesystemError(f"{where}: {self.refused}")
        if self.mismatch:
            raise SharedFilesystemError(
                f"{self.recipe.source}: renderer: resolves differently on {where} than on the driver "
                "(e.g. device: auto); set renderer.options.device explicitly"
            )

    @staticmethod
    def node_id() -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def ready(self) -> str:
        return self.node_id()

    def render_shard(self, job: ShardJob) -> tuple[ShardRecord, str]:
        self._check()
        name = shard_path(job.split, job.index, job.total)
        current: list[str] = []

        def batches():
            for rows in self.source.rows(job.specs or []):
                current[:] = [rows[0]["sample_id"], rows[-1]["sample_id"]] if rows else []
                yield rows

        try:
            record = write_shard(self.staging, job, batches(), self.recipe.output.rows_per_row_group)
        except Exception as err:
            where = f" (samples {current[0]}..{current[1]})" if current else ""
            raise RuntimeError(f"{name}{where}: {type(err).__name__}: {err}") from err
        return record, self.node_id()


class SharedFilesystemError(RuntimeError):
    """A worker cannot do the run as planned (staging folder not visible, renderer differs)."""


def _actor_options(ray, renderer, workers: int | None, gpus_per_worker: float | None):
    """How many actors, what each claims, and its threads. GPU renderers (in-process ones, on a
    cluster with GPUs): one actor per `gpus_per_worker` GPUs, default one each. CPU renderers: one
    per CPU slot, each claiming half its share so Ray's own work is never starved (actors claiming
    every CPU hung Ray on a small box); an actor still uses its whole share of threads."""
    resources = ray.cluster_resources()
    cpus = float(resources.get("CPU", 1))
    gpus = float(resources.get("GPU", 0))
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if renderer.in_process and gpus > 0 else 0.0
    if gpus_per_worker > 0:
        if gpus < gpus_per_worker:
            raise BadInput(f"--gpus-per-worker {gpus_per_worker:g}: the Ray cluster has {gpus:g} GPU(s)")
        n = workers or max(1, int(gpus // gpus_per_worker))
        share = max(1.0, cpus / n)
        return n, {"num_gpus": gpus_per_worker, "num_cpus": min(1.0, share / 2)}, int(share)
    n = workers or max(1, int(cpus))
    share = cpus / n
    return n, {"num_cpus": share / 2}, max(1, round(share))


def run_render_ray(
    recipe: Recipe,
    *,
    out_dir: Path | None = None,
    address: str | None = None,
    ray_workers: int | None = None,
    gpus_per_worker: float | None = None,
    force: bool = False,
    quiet: bool = False,
    limit: int | None = None,
) -> RayOutcome:
    ray = import_ray()
    from tqdm import tqdm

    out_dir = Path(out_dir or recipe.output.dir).resolve()
    prepared = prepare(recipe, limit)
    recipe = prepared.recipe
    run = open_run(out_dir, prepared.fingerprint, prepared.jobs, force)
    if run is None:
        return RayOutcome(out_dir, prepared.fingerprint, prepared.rows, 0, 0, up_to_date=True)
    staging, records, todo = run.staging, run.records, run.todo
    progress = tqdm(
        total=prepared.rows, desc="render", unit="img", disable=quiet, initial=sum(r.rows for r in records)
    )
    synthetic = [job for job in todo if job.specs]
    nodes: dict[str, str] = {}
    retried = 0
    try:
        for job in todo:  # real rows are copied, not rendered: the driver writes them
            if job.specs is None:
                records.append(
                    write_shard(
                        staging, job, real_batches(job, prepared.mix), recipe.output.rows_per_row_group
                    )
                )
                progress.update(job.rows)
        empty = [job for job in todo if job.specs == []]
        for job in empty:
            records.append(write_shard(staging, job, [], recipe.output.rows_per_row_group))
        if synthetic:
            started_here = not ray.is_initialized()
            if started_here:
                ray.init(address=address, log_to_driver=not quiet, include_dashboard=False)
            try:
                found, nodes, retried = _render_on_actors(
                    ray,
                    prepared.renderer,
                    prepared.hints,
                    recipe,
                    staging,
                    synthetic,
                    ray_workers,
                    gpus_per_worker,
                    progress,
                )
                records += found
            finally:
                if started_here:
                    ray.shutdown()
    finally:
        progress.close()
    finish(prepared, staging, records, replace_existing=force)
    return RayOutcome(
        out_dir,
        prepared.fingerprint,
        prepared.rows,
        len(todo),
        len(prepared.jobs) - len(todo),
        nodes=nodes,
        retried=retried,
    )


def _render_on_actors(
    ray,
    renderer,
    hints: PlanHints,
    recipe,
    staging: Staging,
    jobs: list[ShardJob],
    workers,
    gpus_per_worker,
    progress,
) -> tuple[list[ShardRecord], dict[str, str], int]:
    from ray.exceptions import RayActorError, RayTaskError

    n, options, threads = _actor_options(ray, renderer, workers, gpus_per_worker)
    n = min(n, len(jobs))
    probe = f".probe-{uuid.uuid4().hex}"
    (staging.dir / probe).write_text("busforge: every Ray node must see this folder\n")
    actor_class = ray.remote(ShardRenderer).options(scheduling_strategy="SPREAD", **options)

    def start_actor():
        return actor_class.remote(recipe, str(staging.out_dir), probe, threads, renderer.identity(), hints)

    queue = list(jobs)
    tries = {job.index: 0 for job in jobs}
    idle = [start_actor() for _ in range(n)]
    running: dict[Any, tuple[Any, ShardJob]] = {}  # ObjectRef -> (actor, job)
    records: list[ShardRecord] = []
    nodes: dict[str, str] = {}
    retried = 0
    try:
        while queue or running:
            while queue and idle:
                actor, job = idle.pop(), queue.pop(0)
                tries[job.index] += 1
                running[actor.render_shard.remote(job)] = (actor, job)
            ready, _ = ray.wait(list(running), num_returns=1)
            actor, job = running.pop(ready[0])
            try:
                record, node = ray.get(ready[0])
            except RayActorError as err:  # the actor's process died (killed, out of memory, node lost)
                if tries[job.index] >= MAX_TRIES:
                    raise RuntimeError(
                        f"{shard_path(job.split, job.index, job.total)}: its Ray worker died {MAX_TRIES} "
                        f"times; last error: {err}"
                    ) from None
                ray.kill(actor, no_restart=True)
                queue.insert(0, job)  # re-rendered first, by a fresh actor
                retried += 1
                idle.append(start_actor())
                continue
            except RayTaskError as err:  # the shard's rendering raised: no retry, the error is the answer
                cause = getattr(err, "cause", None) or err
                if isinstance(cause, SharedFilesystemError):
                    raise BadInput(str(cause)) from None
                raise RuntimeError(str(cause)) from None
            records.append(record)
            nodes[record.file] = node
            progress.update(record.rows)
            idle.append(actor)
    finally:
        for actor in idle + [actor for actor, _ in running.values()]:
            ray.kill(actor, no_restart=True)
        (staging.dir / probe).unlink(missing_ok=True)
    return records, nodes, retried
