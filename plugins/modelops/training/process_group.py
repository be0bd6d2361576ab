"""A child process that cannot outlive the task that started it, nor leave its own children behind.

The child runs in a process group of its own. On Linux:

* the child gets ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: when the thread that started it dies (a
  SIGKILL of the worker, the OOM killer), the kernel kills the child;
* a tiny watchdog process joins the group with ``PR_SET_PDEATHSIG, SIGTERM`` and, on that signal,
  SIGKILLs the whole group, so processes the child started (joblib workers, shells…) die too;
* both check right after ``prctl`` that their parent is still the one that forked them (it may
  have died in between), and if not, act at once.

:meth:`ProcessGroup.kill` (a timeout, ``on_kill``) and :meth:`ProcessGroup.wait` (after a normal
exit, for whatever the child left running) SIGKILL the group. Elsewhere than Linux only the process
group remains: the child survives a SIGKILL of its parent.

The parent-death signal follows the *thread* that started the child: start it from a thread that
lives as long as the task (Airflow runs ``execute`` in the task process's main thread).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_LINUX = sys.platform.startswith("linux")

# Starts with SIGTERM blocked (inherited from the fork), so a SIGTERM that comes before the handler
# is in place waits for it instead of killing the watchdog alone.
_WATCHDOG = """\
import os, signal, sys
def kill_group(*_):
    os.killpg(0, signal.SIGKILL)
signal.signal(signal.SIGTERM, kill_group)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
if os.getppid() != int(sys.argv[1]):
    kill_group()
while True:
    signal.pause()
"""


def die_with_parent(sig: int, *, block_sig: bool = False) -> Callable[[], None] | None:
    """A ``preexec_fn``: the child gets ``sig`` when the thread that forks it dies (Linux; None elsewhere).

    If the parent died between the fork and ``prctl``, the child sends itself ``sig`` at once.
    ``block_sig`` also blocks ``sig`` in the child (the program unblocks it once it handles it).
    The function makes libc calls only, after a fork: no imports, no locks. Raises ``OSError``
    (as ``subprocess.SubprocessError`` in the parent) if ``prctl`` fails.
    """
    if not _LINUX:
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent, signum = os.getpid(), int(sig)

    def _preexec() -> None:
        if block_sig:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signum})
        if prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:
            os.kill(os.getpid(), signum)

    return _preexec


def kill_group(pgid: int) -> None:
    """SIGKILL every process in the process group ``pgid``; a group that is gone already is fine."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class ProcessGroup:
    """``argv`` started in a new process group, its stdout and stderr merged into :attr:`stdout` (text).

    Use as a context manager, or call :meth:`wait`. ``pid`` is also the group's id.
    """

    def __init__(self, argv: Sequence[str], *, cwd: Path | str, env: Mapping[str, str]) -> None:
        self.proc = subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace", process_group=0, preexec_fn=die_with_parent(signal.SIGKILL),
        )
        self.pid = self.proc.pid
        self.stdout: IO[str] = self.proc.stdout
        self._watchdog: subprocess.Popen | None = None
        if _LINUX:
            try:
                self._watchdog = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", _WATCHDOG, str(os.getpid())], process_group=self.pid,
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True,
                    preexec_fn=die_with_parent(signal.SIGTERM, block_sig=True),
                )
            except BaseException:
                self.kill()
                self.wait()
                raise

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the whole group (the child, what it started, the watchdog)."""
        kill_group(self.pid)

    def wait(self) -> int:
        """Wait for the child, then SIGKILL what is left of its group; the child's exit code (-N: signal N)."""
        code = self.proc.wait()
        kill_group(self.pid)
        if self._watchdog is not None:
            self._watchdog.wait()
        if self.stdout is not None:
            self.stdout.close()
        return code

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.returncode is None:
            self.kill()
        self.wait()
