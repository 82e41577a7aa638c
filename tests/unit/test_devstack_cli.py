"""The stack description: prerequisites, application processes, ports and the ready banner."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from devstack.cli import Ports, StackEndpoints, build_parser, loanbook_apps, ready_block
from devstack.postgres import relocated_root, traversable_by
from devstack.processes import RunAs
from devstack.tools import MissingPrerequisite, find_dynamodb_local_jar, find_java, find_postgres_binaries

STACK = StackEndpoints(
    postgres_dsn="postgresql://loanbook:pw@127.0.0.1:55432/loanbook",
    dynamodb_endpoint="http://127.0.0.1:58000",
    ports=Ports(),
    state_dir=Path("/p/.devstack"),
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


def test_the_payment_service_gets_its_stores_its_peer_and_local_aws_credentials() -> None:
    payment = {app.name: app for app in loanbook_apps(STACK)}["payment"]

    assert payment.argv[1:] == ["-m", "services.payment"]
    assert payment.env["LOANBOOK_PAYMENT_GRPC_PORT"] == "50152"
    assert payment.env["LOANBOOK_PAYMENT_POSTGRES_DSN"] == STACK.postgres_dsn
    assert payment.env["LOANBOOK_PAYMENT_DYNAMODB_ENDPOINT"] == STACK.dynamodb_endpoint
    assert payment.env["LOANBOOK_PAYMENT_CUSTOMER_ADDR"] == "127.0.0.1:50151"
    assert payment.env["AWS_ACCESS_KEY_ID"] == "local"
    assert payment.env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert payment.env["OTEL_SERVICE_NAME"] == "loanbook-payment"


def test_the_stack_starts_services_before_the_gateway_that_calls_them() -> None:
    apps = loanbook_apps(STACK)

    assert [app.name for app in apps] == ["customer", "payment", "logging", "gateway"]
    assert apps[-1].env["LOANBOOK_GATEWAY_LOGGING_ADDR"] == "127.0.0.1:50153"


def test_ports_come_from_flags_over_environment_over_defaults() -> None:
    parser = build_parser({"DEVSTACK_PG_PORT": "6000", "DEVSTACK_GATEWAY_PORT": "6100"})

    args = parser.parse_args(["up", "--gateway-port", "6200"])

    assert (args.pg_port, args.dynamodb_port, args.gateway_port) == (6000, 58000, 6200)


def test_the_ready_banner_lists_every_endpoint_then_extra_lines_then_how_to_stop() -> None:
    banner = ready_block(STACK, loanbook_apps(STACK), [lambda stack: [f"dev token for {stack.ports.gateway_port}"]])

    lines = banner.splitlines()
    assert STACK.postgres_dsn in banner
    assert STACK.dynamodb_endpoint in banner
    assert "127.0.0.1:50153 (gRPC)" in banner
    assert "http://127.0.0.1:58080" in banner
    assert lines[-2].strip() == "dev token for 58080"
    assert lines[-1] == "Press Ctrl-C to stop."
