"""Pool workers die with the process that started them.

A worker whose parent is killed (SIGKILL, OOM) would otherwise live on, holding memory and the
inherited output lock. On Linux the kernel signals the worker when its parent dies
(`prctl(PR_SET_PDEATHSIG)`); everywhere a daemon thread also checks once a second that the
parent is still the one that started it (a dead parent's children are re-parented).
"""

from __future__ import annotations

import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1
POLL_SECONDS = 1.0


def _kernel_watch() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # the thread below still catches it


def _poll(parent_pid: int) -> None:
    event = threading.Event()
    while not event.wait(POLL_SECONDS):
        if os.getppid() != parent_pid:
            os._exit(1)  # nobody is left to read our results


def exit_with_parent(parent_pid: int) -> None:
    """Call first thing in a worker process; `parent_pid` is `os.getpid()` of the parent."""
    _kernel_watch()
    if os.getppid() != parent_pid:  # the parent died before the watch was set up
        os._exit(1)
    threading.Thread(target=_poll, args=(parent_pid,), name="busforge-parent-watch", daemon=True).start()


def worker_initializer(parent_pid: int, initializer, initargs: tuple) -> None:
    """A pool initializer: watch the parent, then run the pool's own initializer (if any)."""
    import signal

    # Ctrl-C reaches the whole process group: the parent reports it and shuts the pool down,
    # so a worker must not print a KeyboardInterrupt traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent(parent_pid)
    if initializer is not None:
        initializer(*initargs)
