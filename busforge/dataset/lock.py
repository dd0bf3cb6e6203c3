"""One run per output folder: an OS lock on `.<name>.lock` beside the output.

Held from the first check of the output to the final rename, by render (any engine) and import
alike, so two runs can never mix their shards into one dataset. The lock is `flock` on an open
file: the OS drops it when the holder dies however it dies, so a stale lock of a killed run is
simply taken over. The file holds the holder's PID and start time, for the message a second run
prints. It is removed on release; a run that finds the file replaced while it waited for it
locks again (the classic unlink race), so two holders never hold two different files.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from busforge.errors import BadInput


def lock_path(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.lock"


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        started = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(float(info["started"])))
        return f"pid {int(info['pid'])} on {info.get('host', '?')}, started {started}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that is still starting"


@contextmanager
def hold_output(out_dir: Path, command: str = "busforge") -> Iterator[None]:
    """Hold the output's lock for the block, or raise BadInput naming the run that holds it."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; runs are not guarded there
        yield
        return
    path = lock_path(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BadInput(
                f"{out_dir}: another busforge run is writing here ({_holder(path)}); wait for it to "
                "finish or stop it, or choose another --out"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder released (and removed) the file between our open and flock
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": command}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        yield
    finally:
        try:
            os.unlink(path)  # while still locked: a waiter then sees a new file, not ours
        except FileNotFoundError:
            pass
        os.close(fd)
