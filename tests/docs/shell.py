"""One bash session, typed into block by block, as a newcomer's terminal.

Exports and background servers started by one block are there for the next. ``set -eo pipefail``
makes a failing command end the session, so a block passes only when each of its commands did.
Each block is sourced from a file with stdin closed, so no command can read the next block.
Waits follow progress (``tests/e2e/waiting.py``): the session's output growing.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
from pathlib import Path

from tests.e2e.waiting import wait_while_moving

DONE = "__docs_block_done__"


class Shell:
    """``bash`` in a process group of its own, its output collected by a reader thread."""

    def __init__(self, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        self._send("set -eo pipefail")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.log.open("a") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                with self._lock:
                    self._lines.append(line.rstrip("\n"))

    def _send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def output_since(self, start: int) -> list[str]:
        with self._lock:
            return self._lines[start:]

    def run(self, script: Path) -> str:
        """Source ``script`` and return what it printed; fail with it if the session ended."""
        with self._lock:
            start = len(self._lines)
        self._send(f"source {shlex.quote(str(script))} </dev/null; echo {DONE}")

        def finished() -> bool:
            if DONE in self.output_since(start):
                return True
            assert self.proc.poll() is None, (
                f"{script.name} failed (the shell exited {self.proc.returncode}):\n"
                + "\n".join(self.output_since(start))[-6000:]
            )
            return False

        wait_while_moving(finished, lambda: len(self.output_since(start)), f"{script.name} to finish")
        return "\n".join(line for line in self.output_since(start) if line != DONE)

    def close(self) -> None:
        """End the session and every process it started (its whole process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(60)

        try:
            wait_while_moving(
                lambda: not live_members(self.proc.pid),
                lambda: live_members(self.proc.pid),
                "the session's processes to stop",
                stall=60,
            )
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)


def live_members(group: int) -> list[int]:
    """The processes of a process group that are not zombies (Linux ``/proc``)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group and fields[0] != "Z":
                members.append(int(stat.parent.name))
    return members
