"""A service and the gateway serving one port from several worker processes, and their supervisor's exits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from pathlib import Path

import grpc
import httpx

from devstack.processes import descendants, free_port, is_running, wait_gone
from loanbook.customer.v1 import customer_pb2, customer_pb2_grpc
from tests.support.system import RunningProcess, run_module, start_process

# A connection per call: grpc otherwise shares one connection between channels to the same address.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
# Each new connection lands on a worker by a hash of its addresses: with this many, both workers get some
# unless the kernel does not spread them at all (the chance that 2 workers miss is 2 ** -23).
CONNECTIONS = 24


def free_port_pair() -> int:
    """A free port whose next port is free too (worker 1 serves its metrics on the next one)."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def customer_env(postgres_dsn: str, port: int, metrics_port: int, workers: str = "2") -> dict[str, str]:
    return {
        "LOANBOOK_CUSTOMER_GRPC_PORT": str(port),
        "LOANBOOK_CUSTOMER_POSTGRES_DSN": postgres_dsn,
        "LOANBOOK_CUSTOMER_WORKERS": workers,
        "LOANBOOK_CUSTOMER_METRICS_PORT": str(metrics_port),
        "OTEL_TRACES_EXPORTER": "none",
        "PYTHONUNBUFFERED": "1",
    }


async def start_workers(name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> RunningProcess:
    running = await start_process(name, argv, env, log_dir)

    async def all_serving() -> bool:
        return "all workers serving" in running.log()

    await running.wait_until_ready(all_serving, timeout=60)  # two start-ups, one after the other
    return running


def listening_pid(port: int, candidates: list[int]) -> int:
    """Which of `candidates` listens on 127.0.0.1:`port` (its socket's inode among the process's open files)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":  # 127.0.0.1, LISTEN
            inodes.add(fields[9])
    sockets = {f"socket:[{inode}]" for inode in inodes}
    owners = set()
    for pid in candidates:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(FileNotFoundError):  # closed while we looked
                if os.readlink(fd) in sockets:
                    owners.add(pid)
    assert len(owners) == 1, (port, owners)
    return owners.pop()


async def served_by(metrics_port: int, counter: str, workers: list[int]) -> tuple[int, float]:
    """The worker serving metrics on `metrics_port` and the sum of its `counter` series."""
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"http://127.0.0.1:{metrics_port}/metrics")
    response.raise_for_status()
    counts = re.findall(rf"^{counter}\{{.*\}} ([0-9.e+]+)$", response.text, re.MULTILINE)
    return listening_pid(metrics_port, workers), sum(float(count) for count in counts)


async def test_two_workers_serve_one_port_and_stop_together_on_sigterm(postgres_dsn: str, tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port_pair()
    argv = [sys.executable, "-m", "services.customer"]
    running = await start_workers("customer-workers", argv, customer_env(postgres_dsn, port, metrics_port), tmp_path)
    try:
        workers = descendants(running.process.pid)
        assert len(workers) == 2, running.log()
        for _ in range(CONNECTIONS):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=OWN_CONNECTION) as channel:
                await customer_pb2_grpc.CustomerServiceStub(channel).ListBranches(
                    customer_pb2.ListBranchesRequest(), timeout=5
                )

        answered = [
            await served_by(metrics_port + index, "rpc_server_duration_milliseconds_count", workers) for index in (0, 1)
        ]
    finally:
        code = await running.terminate()

    assert sorted(pid for pid, _ in answered) == sorted(workers)
    assert all(calls > 0 for _, calls in answered), answered
    assert sum(calls for _, calls in answered) == CONNECTIONS
    assert code == 0, running.log()
    assert await wait_gone(workers, within=5)
    assert "Traceback" not in running.log(), running.log()


async def test_a_worker_that_dies_stops_the_others_and_the_parent_fails(postgres_dsn: str, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "services.customer"]
    env = customer_env(postgres_dsn, free_port(), 0)
    running = await start_workers("customer-worker-killed", argv, env, tmp_path)
    try:
        victim, survivor = descendants(running.process.pid)
        os.kill(victim, signal.SIGKILL)
        code = await asyncio.wait_for(running.process.wait(), 15)
    finally:
        if running.process.returncode is None:
            running.process.kill()

    assert code == 128 + signal.SIGKILL, running.log()
    assert not is_running(survivor)
    assert "worker exited unexpectedly" in running.log()


async def test_a_second_instance_on_a_port_in_use_exits_naming_the_port(postgres_dsn: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, **customer_env(postgres_dsn, port, 0)}
        code, output, _ = await run_module("services.customer", env, stderr_into_stdout=True)

    assert code == 2, output
    assert f"LOANBOOK_CUSTOMER_GRPC_PORT: 127.0.0.1:{port} cannot be served (in use)" in output


async def test_a_bad_worker_count_exits_naming_the_setting(postgres_dsn: str) -> None:
    env = {**os.environ, **customer_env(postgres_dsn, 0, 0, workers="0")}
    code, output, _ = await run_module("services.customer", env, stderr_into_stdout=True)

    assert code == 2, output
    assert "LOANBOOK_CUSTOMER_WORKERS: Input should be greater than or equal to 1" in output


async def test_the_gateway_serves_one_port_from_two_workers(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port_pair()
    nowhere = f"127.0.0.1:{free_port()}"  # the requests below are refused before any upstream call
    env = {
        "LOANBOOK_GATEWAY_HTTP_PORT": str(port),
        "LOANBOOK_GATEWAY_WORKERS": "2",
        "LOANBOOK_GATEWAY_METRICS_PORT": str(metrics_port),
        "LOANBOOK_GATEWAY_CUSTOMER_ADDR": nowhere,
        "LOANBOOK_GATEWAY_PAYMENT_ADDR": nowhere,
        "LOANBOOK_GATEWAY_LOGGING_ADDR": nowhere,
        "LOANBOOK_GATEWAY_JWT_SECRET": "w" * 48,
        "OTEL_TRACES_EXPORTER": "none",
        "PYTHONUNBUFFERED": "1",
    }
    running = await start_workers("gateway-workers", [sys.executable, "-m", "gateway"], env, tmp_path)
    try:
        workers = descendants(running.process.pid)
        # No keep-alive: each request a new connection, spread over the workers by the kernel.
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=5) as client:
            for _ in range(CONNECTIONS):
                response = await client.get("/v1/customers/c-1/payments")
                assert response.status_code == 401, response.text
        answered = [
            await served_by(metrics_port + index, "http_server_request_duration_seconds_count", workers)
            for index in (0, 1)
        ]
    finally:
        code = await running.terminate()

    assert sorted(pid for pid, _ in answered) == sorted(workers)
    assert all(requests > 0 for _, requests in answered), answered
    assert sum(requests for _, requests in answered) == CONNECTIONS
    assert code == 0, running.log()
    assert await wait_gone(workers, within=5)
