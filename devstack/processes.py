"""Spawning, probing and stopping child processes so that none of them can outlive the stack."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

PR_SET_PDEATHSIG = 1

# Loaded in the parent: dlopen between fork and exec is not async-signal-safe.
_LIBC = ctypes.CDLL(None, use_errno=True)

Probe = Callable[[], Awaitable[bool]]


class StartupError(RuntimeError):
    """A child process did not become ready; the message carries the tail of its log."""


@dataclass(frozen=True)
class RunAs:
    """An unprivileged account a child is switched to when the caller is root."""

    name: str
    uid: int
    gid: int


def death_signal_preexec(sig: int) -> Callable[[], None]:
    """A preexec_fn asking the kernel to send `sig` to the child when its parent dies.

    CPython's _posixsubprocess switches uid/gid *before* calling preexec_fn, and the kernel clears
    PDEATHSIG on a credential change, so setting it here (not earlier) is what makes it stick.
    The signal fires when the forking *thread* exits, so spawn from the event loop's thread only.
    """
    parent = os.getpid()

    def preexec() -> None:
        _LIBC.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        # The parent may have died between fork and prctl; then nobody would ever signal us.
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return preexec


async def spawn(
    argv: Sequence[str | Path],
    *,
    log_path: Path | None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    run_as: RunAs | None = None,
    death_signal: int = signal.SIGKILL,
) -> asyncio.subprocess.Process:
    """Start a child in its own process group (a terminal Ctrl-C reaches only the supervisor)."""
    log_file = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = log_path.open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            *[str(part) for part in argv],
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT if log_file is not None else None,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            process_group=0,
            preexec_fn=death_signal_preexec(death_signal),
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
            extra_groups=[] if run_as else None,
        )
    finally:
        if log_file is not None:
            log_file.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path | None, lines: int = 20) -> str:
    if path is None or not path.exists():
        return "(no log file)"
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 16384))
        text = handle.read().decode("utf-8", errors="replace")
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "(log file is empty)"


def is_running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (orphans may wait forever for a reaper in containers)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in {"Z", "X"}


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`, found through /proc (PostgreSQL backends start their own sessions)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


async def wait_gone(pids: Sequence[int], within: float) -> bool:
    deadline = time.monotonic() + within
    while any(is_running(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def terminate(
    process: asyncio.subprocess.Process, *, first_signal: int = signal.SIGTERM, grace: float = 10.0
) -> int:
    """Ask politely, then SIGKILL the child and anything it left behind."""
    if process.returncode is not None:
        return process.returncode
    leftovers = descendants(process.pid)
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(first_signal)
    try:
        return await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        leftovers = sorted(set(leftovers) | set(descendants(process.pid)))
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        returncode = await process.wait()
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await wait_gone(leftovers, 5.0)
        return returncode


async def wait_until_ready(
    name: str,
    process: asyncio.subprocess.Process,
    probe: Probe,
    *,
    limit: float,
    log_path: Path | None,
    interval: float = 0.1,
) -> None:
    deadline = time.monotonic() + limit
    while True:
        if process.returncode is not None:
            raise StartupError(
                f"{name} (pid {process.pid}) exited with code {process.returncode} during start-up; "
                f"last lines of {log_path}:\n{log_tail(log_path)}"
            )
        if await probe():
            return
        if time.monotonic() > deadline:
            raise StartupError(
                f"{name} (pid {process.pid}) was not ready after {limit:.0f} s; "
                f"last lines of {log_path}:\n{log_tail(log_path)}"
            )
        await asyncio.sleep(interval)


class ChildProcess(ABC):
    """One supervised child (a ManagedProcess): started until its probe says ready, waited for, stopped politely first.

    Subclasses say how to start it (`start`, through `_launch`) and which signal asks it to stop.
    """

    def __init__(self, name: str, *, stop_signal: int, start_timeout: float, stop_timeout: float) -> None:
        self.name = name
        self._stop_signal = stop_signal
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process is not None else None

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @abstractmethod
    async def start(self) -> None:
        """Start the child and return once it is ready to serve."""

    async def _launch(
        self,
        argv: Sequence[str | Path],
        ready: Probe,
        *,
        log_path: Path | None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        run_as: RunAs | None = None,
        death_signal: int,
    ) -> None:
        """Spawn the child (see `spawn`) and wait until `ready` answers true, within the start timeout."""
        self._process = await spawn(argv, log_path=log_path, env=env, cwd=cwd, run_as=run_as, death_signal=death_signal)
        await wait_until_ready(self.name, self._process, ready, limit=self._start_timeout, log_path=log_path)

    async def wait(self) -> int:
        assert self._process is not None, "start() first"
        return await self._process.wait()

    async def stop(self) -> None:
        if self._process is None:
            return
        await terminate(self._process, first_signal=self._stop_signal, grace=self._stop_timeout)
