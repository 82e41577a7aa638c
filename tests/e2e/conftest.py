"""Runs the three services and the gateway as real processes, exactly as `make up` describes them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from devstack.cli import Ports, StackEndpoints, loanbook_apps
from devstack.processes import free_port
from tests.support.otlp_receiver import OtlpTraceReceiver
from tests.support.system import RunningProcess, RunningSystem, start_process, telemetry_env


@pytest.fixture(scope="module")
async def running_system(
    postgres_dsn: str, dynamodb_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningSystem]:
    receiver = OtlpTraceReceiver()
    await receiver.start()
    log_dir = tmp_path_factory.mktemp("system-logs")
    ports = Ports(
        pg_port=0,
        dynamodb_port=0,
        customer_port=free_port(),
        payment_port=free_port(),
        logging_port=free_port(),
        gateway_port=free_port(),
        customer_metrics_port=free_port(),
        payment_metrics_port=free_port(),
        logging_metrics_port=free_port(),
        gateway_metrics_port=free_port(),
    )
    apps = loanbook_apps(StackEndpoints(postgres_dsn, dynamodb_endpoint, ports, log_dir))
    processes: dict[str, RunningProcess] = {}
    try:
        for app in apps:  # in dependency order, each ready before the next starts
            running = await start_process(app.name, app.argv, {**app.env, **telemetry_env(receiver)}, log_dir)
            processes[app.name] = running
            await running.wait_until_ready(app.readiness)
        yield RunningSystem({app.name: app for app in apps}, processes, ports, receiver)
    finally:
        for running in reversed(processes.values()):
            if running.process.returncode is None:
                running.process.kill()
                await running.process.wait()
        await receiver.stop()
