"""A small asyncio supervisor: start children in order, watch them, stop them all in reverse order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO

import httpx

from devstack.processes import ChildProcess, log_tail

log = logging.getLogger(__name__)

Readiness = Callable[[], Awaitable[bool]]


class ManagedProcess(Protocol):
    """What the supervisor needs from a child: PostgresServer, DynamoDBLocal and CommandProcess fit."""

    @property
    def name(self) -> str: ...

    @property
    def pid(self) -> int | None: ...

    @property
    def log_path(self) -> Path | None: ...

    async def start(self) -> None:
        """Start the child and return once it is ready to serve."""

    async def wait(self) -> int:
        """Wait for the child to exit and return its exit code (negative for a signal)."""

    async def stop(self) -> None:
        """Stop the child (politely first) and anything it started."""


def grpc_health(address: str, service: str = "") -> Readiness:
    """Ready when the standard grpc.health.v1 service reports `service` as SERVING."""

    async def probe() -> bool:
        # Imported here so infrastructure-only runs never pay for loading gRPC.
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        try:
            async with grpc.aio.insecure_channel(address) as channel:
                response = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=1.0
                )
        except grpc.aio.AioRpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    return probe


def http_ok(url: str) -> Readiness:
    """Ready when a GET on `url` answers 200."""

    async def probe() -> bool:
        try:
            async with httpx.AsyncClient(timeout=1.0) as client:
                response = await client.get(url)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    return probe


@dataclass(frozen=True)
class AppProcess:
    """One application process of the stack, described as data so the list can be swapped in tests."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    readiness: Readiness
    endpoint: str = ""
    inherit_env: bool = field(default=True)


class CommandProcess(ChildProcess):
    """A ManagedProcess for a plain command, logging to `<log_dir>/<name>.log`."""

    def __init__(
        self,
        app: AppProcess,
        *,
        log_dir: Path | None,
        cwd: Path | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        super().__init__(app.name, stop_signal=signal.SIGTERM, start_timeout=start_timeout, stop_timeout=stop_timeout)
        self.app = app
        self._log_path = log_dir / f"{app.name}.log" if log_dir is not None else None
        self._cwd = cwd

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    async def start(self) -> None:
        env = {**os.environ, **self.app.env} if self.app.inherit_env else dict(self.app.env)
        await self._launch(
            self.app.argv,
            self.app.readiness,
            log_path=self._log_path,
            env=env,
            cwd=self._cwd,
            death_signal=signal.SIGTERM,
        )


class StackStopped(Exception):
    """Start-up was interrupted by a stop request or by another child dying."""


class Supervisor:
    """Owns the children; `start()` each in order, then `wait()`; always finish with `stop_all()`."""

    def __init__(self, *, out: TextIO | None = None, on_change: Callable[[dict[str, int]], None] | None = None) -> None:
        self._out = out if out is not None else sys.stderr
        self._on_change = on_change
        self._processes: list[ManagedProcess] = []
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self.failure: str | None = None

    @property
    def exit_code(self) -> int:
        return 1 if self.failure else 0

    @property
    def pids(self) -> dict[str, int]:
        return {process.name: process.pid for process in self._processes if process.pid is not None}

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)

    def request_stop(self) -> None:
        self._stopping.set()

    async def start(self, process: ManagedProcess) -> None:
        if self._stopping.is_set():
            raise StackStopped
        # Registered before starting so that stop_all() also reaches a child that never became ready.
        self._processes.append(process)
        starting = asyncio.create_task(process.start())
        stopping = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await starting
            raise StackStopped
        starting.result()
        log.info("%s is ready (pid %s)", process.name, process.pid)
        self._watchers.append(asyncio.create_task(self._watch(process)))
        self._changed()

    async def wait(self) -> int:
        """Run until a stop is requested or a child exits on its own; returns the exit code to use."""
        await self._stopping.wait()
        return self.exit_code

    async def stop_all(self) -> None:
        self._stopping.set()
        for process in reversed(self._processes):
            try:
                await process.stop()
            except Exception:
                log.exception("stopping %s failed", process.name)
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        self._changed()

    async def _watch(self, process: ManagedProcess) -> None:
        code = await process.wait()
        if self._stopping.is_set():
            return
        self.failure = (
            f"devstack: {process.name} (pid {process.pid}) exited unexpectedly with code {code}; stopping the stack"
        )
        print(self.failure, file=self._out, flush=True)
        if process.log_path is not None:
            print(f"last lines of {process.log_path}:\n{log_tail(process.log_path)}", file=self._out, flush=True)
        self._stopping.set()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.pids)
