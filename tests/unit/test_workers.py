"""The worker-count setting, each worker's metrics endpoint and identity, and the supervisor's port reservation."""

from __future__ import annotations

import os
import signal
import socket

import pytest

from chassis.config import MAX_WORKERS, ConfigurationError, load_settings
from chassis.telemetry import MetricsEndpoint, resource_for, worker_endpoint
from chassis.workers import exit_code, reserve_port, reuse_port_socket
from gateway.config import GatewaySettings
from services.customer.config import CustomerSettings

DSN = "postgresql://u:p@127.0.0.1:1/db"


@pytest.fixture
def customer_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("LOANBOOK_CUSTOMER_POSTGRES_DSN", DSN)
    monkeypatch.delenv("LOANBOOK_CUSTOMER_WORKERS", raising=False)
    monkeypatch.delenv("LOANBOOK_CUSTOMER_METRICS_PORT", raising=False)
    return monkeypatch


def test_one_worker_unless_told(customer_env: pytest.MonkeyPatch) -> None:
    assert load_settings(CustomerSettings).workers == 1
    customer_env.setenv("LOANBOOK_CUSTOMER_WORKERS", "4")
    assert load_settings(CustomerSettings).workers == 4


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("0", "Input should be greater than or equal to 1"),
        (str(MAX_WORKERS + 1), f"Input should be less than or equal to {MAX_WORKERS}"),
        ("two", "Input should be a valid integer"),
    ],
)
def test_a_worker_count_out_of_bounds_names_the_variable(
    customer_env: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    customer_env.setenv("LOANBOOK_CUSTOMER_WORKERS", value)

    with pytest.raises(ConfigurationError, match=f"LOANBOOK_CUSTOMER_WORKERS: {problem}"):
        load_settings(CustomerSettings)


def test_the_gateway_has_the_setting_too(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CUSTOMER", "PAYMENT", "LOGGING"):
        monkeypatch.setenv(f"LOANBOOK_GATEWAY_{name}_ADDR", "127.0.0.1:1")
    monkeypatch.setenv("LOANBOOK_GATEWAY_JWT_SECRET", "s" * 48)
    monkeypatch.setenv("LOANBOOK_GATEWAY_WORKERS", "0")

    with pytest.raises(ConfigurationError, match="LOANBOOK_GATEWAY_WORKERS: Input should be greater than or equal"):
        load_settings(GatewaySettings)


def test_each_worker_needs_a_metrics_port_of_its_own(customer_env: pytest.MonkeyPatch) -> None:
    customer_env.setenv("LOANBOOK_CUSTOMER_WORKERS", "3")
    customer_env.setenv("LOANBOOK_CUSTOMER_METRICS_PORT", "65534")

    with pytest.raises(ConfigurationError, match="leaves no port for each of 3 workers"):
        load_settings(CustomerSettings)

    customer_env.setenv("LOANBOOK_CUSTOMER_METRICS_PORT", "65533")
    assert load_settings(CustomerSettings).metrics_port == 65533


def test_a_worker_serves_its_metrics_on_the_port_plus_its_index() -> None:
    endpoint = MetricsEndpoint("0.0.0.0", 9464, "LOANBOOK_PAYMENT_METRICS_PORT")

    assert worker_endpoint(endpoint, 0) == endpoint
    assert worker_endpoint(endpoint, 2).port == 9466
    assert "worker 2" in worker_endpoint(endpoint, 2).setting
    assert worker_endpoint(MetricsEndpoint("0.0.0.0", 0), 2).port == 0  # each picks a free one
    with pytest.raises(ConfigurationError, match="LOANBOOK_PAYMENT_METRICS_PORT"):
        worker_endpoint(MetricsEndpoint("0.0.0.0", 65535, "LOANBOOK_PAYMENT_METRICS_PORT"), 1)


def test_each_process_has_an_instance_id_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    # Workers push the same instruments under the same service name over OTLP; the SDK's random instance id keeps
    # one worker's cumulative counters from overwriting another's.
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)

    parent = resource_for("loanbook-payment", "production").attributes
    again = resource_for("loanbook-payment", "production").attributes
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as a forked worker sees it: a pid of its own
    worker = resource_for("loanbook-payment", "production").attributes

    assert parent["service.instance.id"] == again["service.instance.id"]
    assert worker["service.instance.id"] != parent["service.instance.id"]


def test_a_port_someone_serves_is_refused_naming_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(ConfigurationError, match=f"LOANBOOK_PAYMENT_GRPC_PORT: 127.0.0.1:{port} .*in use"):
            reserve_port("127.0.0.1", port, "LOANBOOK_PAYMENT_GRPC_PORT")


def test_a_port_another_supervisor_holds_is_refused() -> None:
    # The first instance's workers listen with SO_REUSEPORT: a second one must not take a share of the port.
    with reuse_port_socket("127.0.0.1", 0) as first:
        first.listen()
        port = first.getsockname()[1]

        with pytest.raises(ConfigurationError, match="in use"):
            reserve_port("127.0.0.1", port, "LOANBOOK_PAYMENT_GRPC_PORT")


def test_port_zero_reserves_a_port_every_worker_can_bind() -> None:
    with reserve_port("127.0.0.1", 0, "LOANBOOK_PAYMENT_GRPC_PORT") as reservation:
        port = reservation.getsockname()[1]
        with reuse_port_socket("127.0.0.1", port) as one, reuse_port_socket("127.0.0.1", port) as two:
            one.listen()
            two.listen()
            assert port > 0
        # A stranger without SO_REUSEPORT cannot bind it meanwhile.
        with socket.socket() as stranger, pytest.raises(OSError, match="in use"):
            stranger.bind(("127.0.0.1", port))


def test_a_worker_killed_by_a_signal_counts_as_the_shell_does() -> None:
    assert exit_code(3 << 8) == 3
    assert exit_code(signal.SIGKILL) == 128 + signal.SIGKILL


def test_the_workers_benchmark_takes_a_list_of_worker_counts() -> None:
    import typer

    from bench.workers import worker_counts

    assert worker_counts("1,2") == [1, 2]
    assert worker_counts("4") == [4]
    for bad in ("", "0,1", "1,65", "one"):
        with pytest.raises(typer.BadParameter, match=r"each 1\.\.64"):
            worker_counts(bad)


@pytest.mark.parametrize(
    ("value", "problem"), [("0", "greater than or equal to 1"), ("33", "less than or equal to 32")]
)
def test_upstream_connections_out_of_bounds_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    for name in ("CUSTOMER", "PAYMENT", "LOGGING"):
        monkeypatch.setenv(f"LOANBOOK_GATEWAY_{name}_ADDR", "127.0.0.1:1")
    monkeypatch.setenv("LOANBOOK_GATEWAY_JWT_SECRET", "s" * 48)
    monkeypatch.setenv("LOANBOOK_GATEWAY_UPSTREAM_CONNECTIONS", value)

    with pytest.raises(ConfigurationError, match=f"LOANBOOK_GATEWAY_UPSTREAM_CONNECTIONS: Input should be {problem}"):
        load_settings(GatewaySettings)
