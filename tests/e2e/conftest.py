"""Runs the three services and the gateway as real processes against the test stores."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.e2e.otlp_receiver import OtlpTraceReceiver

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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


async def start_process(name: str, module: str, env: Mapping[str, str], log_dir: Path) -> RunningProcess:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, cwd=PROJECT_ROOT, env={**os.environ, **env}, stdout=log, stderr=log
        )
    return RunningProcess(name, process, log_path)


async def wait_until_serving(running: RunningProcess, address: str, timeout: float = 30) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if running.process.returncode is not None:
                raise AssertionError(f"{running.name} exited with {running.process.returncode}:\n{running.log()}")
            try:
                response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{running.name} not SERVING within {timeout}s:\n{running.log()}")


async def wait_until_live(running: RunningProcess, url: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient() as client:
        while asyncio.get_running_loop().time() < deadline:
            if running.process.returncode is not None:
                raise AssertionError(f"{running.name} exited with {running.process.returncode}:\n{running.log()}")
            try:
                if (await client.get(url, timeout=1)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{running.name} not live within {timeout}s:\n{running.log()}")


@dataclass
class RunningSystem:
    grpc_addresses: dict[str, str]
    gateway_url: str
    processes: dict[str, RunningProcess]
    receiver: OtlpTraceReceiver
    base_env: dict[str, str] = field(default_factory=dict)


def telemetry_env(receiver: OtlpTraceReceiver, service: str) -> dict[str, str]:
    return {
        "OTEL_SERVICE_NAME": f"loanbook-{service}",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.address,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


@pytest.fixture(scope="module")
async def running_system(
    postgres_dsn: str, dynamodb_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningSystem]:
    receiver = OtlpTraceReceiver()
    await receiver.start()
    log_dir = tmp_path_factory.mktemp("system-logs")
    ports = {name: free_port() for name in ("customer", "payment", "logging", "gateway")}
    addresses = {name: f"127.0.0.1:{ports[name]}" for name in ("customer", "payment", "logging")}
    aws = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"}
    service_env = {
        "customer": {
            "LOANBOOK_CUSTOMER_GRPC_PORT": str(ports["customer"]),
            "LOANBOOK_CUSTOMER_POSTGRES_DSN": postgres_dsn,
        },
        "payment": {
            **aws,
            "LOANBOOK_PAYMENT_GRPC_PORT": str(ports["payment"]),
            "LOANBOOK_PAYMENT_POSTGRES_DSN": postgres_dsn,
            "LOANBOOK_PAYMENT_DYNAMODB_ENDPOINT": dynamodb_endpoint,
            "LOANBOOK_PAYMENT_CUSTOMER_ADDR": addresses["customer"],
        },
        "logging": {
            **aws,
            "LOANBOOK_LOGGING_GRPC_PORT": str(ports["logging"]),
            "LOANBOOK_LOGGING_POSTGRES_DSN": postgres_dsn,
            "LOANBOOK_LOGGING_DYNAMODB_ENDPOINT": dynamodb_endpoint,
        },
    }
    processes: dict[str, RunningProcess] = {}
    try:
        for name, env in service_env.items():
            processes[name] = await start_process(
                name, f"services.{name}", {**env, **telemetry_env(receiver, name)}, log_dir
            )
        for name, address in addresses.items():
            await wait_until_serving(processes[name], address)
        gateway_env = {
            "LOANBOOK_GATEWAY_HTTP_PORT": str(ports["gateway"]),
            **{f"LOANBOOK_GATEWAY_{name.upper()}_ADDR": address for name, address in addresses.items()},
        }
        processes["gateway"] = await start_process(
            "gateway", "gateway", {**gateway_env, **telemetry_env(receiver, "gateway")}, log_dir
        )
        gateway_url = f"http://127.0.0.1:{ports['gateway']}"
        await wait_until_live(processes["gateway"], f"{gateway_url}/healthz")
        yield RunningSystem(addresses, gateway_url, processes, receiver, gateway_env)
    finally:
        for running in reversed(processes.values()):
            if running.process.returncode is None:
                running.process.kill()
                await running.process.wait()
        await receiver.stop()
