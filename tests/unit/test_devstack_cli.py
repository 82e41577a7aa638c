"""The stack description: prerequisites, application processes, ports and the ready banner."""

from __future__ import annotations

import importlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest

from chassis.identity import Role
from devstack.cli import (
    DEV_CUSTOMER_ID,
    AppFactory,
    ExtraLines,
    Ports,
    StackEndpoints,
    StackOptions,
    development_tokens,
    gateway_jwt_secret,
    loanbook_apps,
    main,
    ready_block,
)
from devstack.postgres import relocated_root, traversable_by
from devstack.processes import RunAs
from devstack.tools import MissingPrerequisite, find_dynamodb_local_jar, find_java, find_postgres_binaries
from gateway.auth import TokenVerifier
from gateway.config import GatewaySettings


class RecordingStart:
    """Stands in for running a stack: keeps what each start was asked for and answers with a fixed exit code."""

    def __init__(self, exit_code: int = 0) -> None:
        self.exit_code = exit_code
        self.started: list[tuple[StackOptions, AppFactory | None, Sequence[ExtraLines]]] = []

    def __call__(self, options: StackOptions, apps: AppFactory | None, extra_lines: Sequence[ExtraLines]) -> int:
        self.started.append((options, apps, extra_lines))
        return self.exit_code


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No DEVSTACK_* variable from the machine running the tests; a test sets the ones it means."""
    for name in [name for name in os.environ if name.startswith("DEVSTACK_")]:
        monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def stack(tmp_path: Path) -> StackEndpoints:
    return StackEndpoints(
        postgres_dsn="postgresql://loanbook:pw@127.0.0.1:55432/loanbook",
        dynamodb_endpoint="http://127.0.0.1:58000",
        ports=Ports(),
        state_dir=tmp_path,
    )


def test_an_empty_pg_bin_folder_names_the_debian_package_to_install(tmp_path: Path) -> None:
    with pytest.raises(MissingPrerequisite) as raised:
        find_postgres_binaries({"LOANBOOK_PG_BIN": str(tmp_path), "PATH": ""})

    message = str(raised.value)
    assert message.startswith("PostgreSQL 15 server binaries not found (looked in ")
    assert str(tmp_path) in message
    assert "apt-get install postgresql-15" in message
    assert "or set LOANBOOK_PG_BIN" in message


def test_a_missing_java_names_the_debian_package_to_install(tmp_path: Path) -> None:
    with pytest.raises(MissingPrerequisite, match="openjdk-17-jre-headless"):
        find_java({"PATH": str(tmp_path)})


def test_a_missing_dynamodb_jar_says_to_run_npm_ci(tmp_path: Path) -> None:
    with pytest.raises(MissingPrerequisite, match=r"run `npm ci` in the project root .*Debian package 'npm'"):
        find_dynamodb_local_jar(tmp_path)


def test_pg_bin_points_at_a_folder_with_the_server_programs(tmp_path: Path) -> None:
    for name in ("postgres", "initdb", "pg_ctl"):
        program = tmp_path / name
        program.write_text("#!/bin/sh\n")
        program.chmod(0o755)

    assert find_postgres_binaries({"LOANBOOK_PG_BIN": str(tmp_path)}).bin_dir == tmp_path


def test_a_folder_without_search_permission_for_others_blocks_an_unprivileged_account(tmp_path: Path) -> None:
    stranger = RunAs("stranger", uid=os.geteuid() + 4242, gid=os.getegid() + 4242)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    tmp_path.chmod(0o755)
    open_path = tmp_path / "open"
    open_path.mkdir(mode=0o755)

    assert not traversable_by(private, stranger)
    assert traversable_by(open_path, stranger) == all(
        p.stat().st_mode & stat.S_IXOTH for p in (open_path, *open_path.parents)
    )


def test_relocated_data_gets_a_readable_name_and_a_hash_of_the_state_path() -> None:
    first = relocated_root(Path("/root/my project/.devstack"), Path("/var/lib/x"))
    second = relocated_root(Path("/home/me/my project/.devstack"), Path("/var/lib/x"))

    assert first.parent == Path("/var/lib/x")
    assert first.name.startswith("my-project-")
    assert first != second


def test_the_payment_service_gets_its_stores_its_peer_and_local_aws_credentials(stack: StackEndpoints) -> None:
    payment = {app.name: app for app in loanbook_apps(stack)}["payment"]

    assert payment.argv[1:] == ["-m", "services.payment"]
    assert payment.env["LOANBOOK_PAYMENT_GRPC_PORT"] == "50152"
    assert payment.env["LOANBOOK_PAYMENT_POSTGRES_DSN"] == stack.postgres_dsn
    assert payment.env["LOANBOOK_PAYMENT_DYNAMODB_ENDPOINT"] == stack.dynamodb_endpoint
    assert payment.env["LOANBOOK_PAYMENT_CUSTOMER_ADDR"] == "127.0.0.1:50151"
    assert payment.env["AWS_ACCESS_KEY_ID"] == "local"
    assert payment.env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert payment.env["OTEL_SERVICE_NAME"] == "loanbook-payment"


def test_the_stack_starts_services_before_the_gateway_that_calls_them(stack: StackEndpoints) -> None:
    apps = loanbook_apps(stack)

    assert [app.name for app in apps] == ["logging", "customer", "payment", "gateway"]
    assert apps[-1].env["LOANBOOK_GATEWAY_LOGGING_ADDR"] == "127.0.0.1:50153"


def test_services_ship_their_own_logs_to_the_logging_service_but_it_does_not_ship_to_itself(
    stack: StackEndpoints,
) -> None:
    apps = {app.name: app for app in loanbook_apps(stack)}

    assert apps["customer"].env["LOANBOOK_CUSTOMER_LOG_SHIPPING_ADDR"] == "127.0.0.1:50153"
    assert apps["payment"].env["LOANBOOK_PAYMENT_LOG_SHIPPING_ADDR"] == "127.0.0.1:50153"
    assert apps["gateway"].env["LOANBOOK_GATEWAY_SHIP_OWN_LOGS"] == "true"
    assert not any("SHIPPING" in name for name in apps["logging"].env)


def test_ports_come_from_flags_over_environment_over_defaults(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("DEVSTACK_PG_PORT", "6000")
    environment.setenv("DEVSTACK_GATEWAY_PORT", "6100")
    start = RecordingStart()

    assert main(["up", "--gateway-port", "6200"], start=start) == 0

    ports = start.started[0][0].ports
    assert (ports.pg_port, ports.dynamodb_port, ports.gateway_port) == (6000, 58000, 6200)


def test_up_starts_the_given_applications_and_extra_lines_and_exits_with_the_stack_exit_code(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    start = RecordingStart(exit_code=1)
    extra_lines: list[ExtraLines] = [development_tokens]

    exit_code = main(["up", "--state-dir", str(tmp_path), "--ephemeral"], start=start, extra_lines=extra_lines)

    options, apps, lines = start.started[0]
    assert exit_code == 1
    assert options == StackOptions(tmp_path.resolve(), Ports(), ephemeral=True)
    assert apps is loanbook_apps
    assert list(lines) == extra_lines


def test_infra_starts_no_applications_and_keeps_the_service_ports_at_their_defaults(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    environment.setenv("DEVSTACK_STATE_DIR", str(tmp_path))
    environment.setenv("DEVSTACK_CUSTOMER_PORT", "6300")
    start = RecordingStart()

    main(["infra", "--pg-port", "6000"], start=start)

    options, apps, _ = start.started[0]
    assert apps is None
    assert options == StackOptions(tmp_path.resolve(), Ports(pg_port=6000), ephemeral=False)


def test_status_exits_with_3_when_no_stack_runs_from_the_state_folder(
    environment: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--state-dir", str(tmp_path)]) == 3
    assert capsys.readouterr().out == f"devstack: not running from {tmp_path.resolve()}\n"


def test_a_port_variable_that_is_not_a_number_is_a_usage_error_naming_the_variable(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("DEVSTACK_PG_PORT", "x")
    start = RecordingStart()

    assert main(["up"], start=start) == 2
    assert "DEVSTACK_PG_PORT" in capsys.readouterr().err
    assert start.started == []


def test_the_ready_banner_lists_every_endpoint_then_extra_lines_then_how_to_stop(stack: StackEndpoints) -> None:
    banner = ready_block(stack, loanbook_apps(stack), [lambda stack: [f"dev token for {stack.ports.gateway_port}"]])

    lines = banner.splitlines()
    assert stack.postgres_dsn in banner
    assert stack.dynamodb_endpoint in banner
    assert "127.0.0.1:50153 (gRPC)" in banner
    assert "http://127.0.0.1:58080" in banner
    assert lines[-2].strip() == "dev token for 58080"
    assert lines[-1] == "Press Ctrl-C to stop."


def test_the_gateway_gets_a_generated_secret_kept_private_and_stable_in_the_state_folder(stack: StackEndpoints) -> None:
    first = {app.name: app for app in loanbook_apps(stack)}["gateway"].env["LOANBOOK_GATEWAY_JWT_SECRET"]
    second = {app.name: app for app in loanbook_apps(stack)}["gateway"].env["LOANBOOK_GATEWAY_JWT_SECRET"]

    secret_file = stack.state_dir / "gateway-jwt-secret"
    assert first == second == secret_file.read_text().strip()
    assert len(first) >= 32
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600


def test_each_state_folder_gets_its_own_secret(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()

    assert gateway_jwt_secret(tmp_path / "a") != gateway_jwt_secret(tmp_path / "b")


async def test_the_banner_tokens_are_accepted_by_a_gateway_with_the_stack_secret(stack: StackEndpoints) -> None:
    settings = GatewaySettings(
        customer_addr="127.0.0.1:1",
        payment_addr="127.0.0.1:1",
        logging_addr="127.0.0.1:1",
        environment="test",
        jwt_secret=gateway_jwt_secret(stack.state_dir),
    )
    verifier = TokenVerifier(settings)
    lines = development_tokens(stack)
    tokens = {line.split()[0]: line.split()[1] for line in lines[1:] if len(line.split()) == 2}

    callers = {role: await verifier.verify(token) for role, token in tokens.items()}

    assert set(callers) == {"admin", "officer", "service", "customer"}
    assert all(caller.role == Role(role) for role, caller in callers.items())
    assert callers["customer"].customer_id == DEV_CUSTOMER_ID
    assert any(DEV_CUSTOMER_ID in line and "demo customer" in line for line in lines)


def test_the_development_customer_token_names_the_seeded_demo_customer() -> None:
    from services.customer.demo import DEMO_CUSTOMER_ID

    assert str(DEMO_CUSTOMER_ID) == DEV_CUSTOMER_ID


def test_grpc_fork_handlers_are_off_where_devstack_forks_children() -> None:
    # conftest imports devstack before anything loads grpc, as `python -m devstack` does; with the handlers on,
    # a child forked while gRPC threads are busy can abort before it execs (PostgreSQL died with SIGABRT).
    cygrpc = importlib.import_module("grpc._cython.cygrpc")  # untyped internals: the flag gRPC read at load

    assert cygrpc._GRPC_ENABLE_FORK_SUPPORT is False
