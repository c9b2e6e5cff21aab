"""Background server processes for tests: each in its own process group, stopped by its PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A background command in its own process group, logging to a file."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path, cwd: Path,
                 background_job: bool = False) -> None:
        """``background_job``: start as a shell's ``command &`` does, with SIGINT ignored. Otherwise SIGINT is
        reset to its default, as a service manager starts a process, whatever this test process inherited: a
        pytest started as a background job of a script ignores SIGINT, and Prefect's workers, which stop on
        SIGTERM by raising SIGINT in themselves, would then wait out every stop's grace period."""
        self.log = log
        self.terminated = False
        self.handle = subprocess.Popen(command, env=env, cwd=cwd, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                       start_new_session=True,
                                       preexec_fn=_ignore_sigint if background_job else _default_sigint)

    def alive(self) -> bool:
        return self.handle.poll() is None

    def kill(self) -> None:
        """SIGKILL to the whole group: a crash, no chance to clean up."""
        if self.alive():
            os.killpg(self.handle.pid, signal.SIGKILL)
            self.handle.wait(timeout=30)

    def terminate(self) -> None:
        """SIGTERM to the whole group, once, without waiting: several processes can then stop at once."""
        if self.alive() and not self.terminated:
            os.killpg(self.handle.pid, signal.SIGTERM)
            self.terminated = True

    def stop(self, grace: float = 10) -> None:
        """SIGTERM to the whole group (unless :meth:`terminate` sent it), up to ``grace`` seconds to exit, then
        SIGKILL."""
        self.terminate()
        if self.alive():
            try:
                self.handle.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.handle.pid, signal.SIGKILL)
                self.handle.wait(timeout=30)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def children(pid: int) -> list[int]:
    """PIDs of the live direct children of ``pid`` (read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found
