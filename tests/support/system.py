"""The whole system as processes for end-to-end tests: starting them, and where they listen."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from devstack.cli import Ports
from devstack.supervisor import AppProcess, Readiness
from tests.support.otlp_receiver import OtlpTraceReceiver

PROJECT_ROOT = Path(__file__).resolve().parents[2]


async def run_module(
    module: str,
    env: Mapping[str, str],
    timeout: float = 30,
    *,
    args: Sequence[str] = (),
    stderr_into_stdout: bool = False,
) -> tuple[int, str, str]:
    """Runs `python -m module args...` from the project root as an operator would; its exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        cwd=PROJECT_ROOT,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if stderr_into_stdout else asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), (err or b"").decode()


@dataclass
class RunningProcess:
    name: str
    process: asyncio.subprocess.Process
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def terminate(self, timeout: float = 15) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError(f"{self.name} did not stop within {timeout}s of SIGTERM:\n{self.log()}") from None

    async def wait_until_ready(self, readiness: Readiness, timeout: float = 30) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if self.process.returncode is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
            if await readiness():
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} not ready within {timeout}s:\n{self.log()}")


async def start_process(name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path) -> RunningProcess:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=PROJECT_ROOT, env={**os.environ, **env}, stdout=log, stderr=log
        )
    return RunningProcess(name, process, log_path)


@dataclass
class RunningSystem:
    apps: dict[str, AppProcess]
    processes: dict[str, RunningProcess]
    ports: Ports
    receiver: OtlpTraceReceiver

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway_port}"

    @property
    def jwt_secret(self) -> str:
        """The secret devstack generated for this stack's gateway; tests mint tokens with it."""
        return self.apps["gateway"].env["LOANBOOK_GATEWAY_JWT_SECRET"]

    @property
    def grpc_addresses(self) -> dict[str, str]:
        return {
            "customer": f"127.0.0.1:{self.ports.customer_port}",
            "payment": f"127.0.0.1:{self.ports.payment_port}",
            "logging": f"127.0.0.1:{self.ports.logging_port}",
        }


def telemetry_env(receiver: OtlpTraceReceiver) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.address,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": "2000",
    }


LOG_SHARDS = 8


RETENTION = timedelta(days=30)


# The services' DynamoDB table prefix (their default).
TABLE_PREFIX = "loanbook"


def table_name(table: str) -> str:
    return f"{TABLE_PREFIX}-{table}"
