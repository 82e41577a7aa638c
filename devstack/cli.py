"""`python -m devstack`: run the local infrastructure, or the whole loanbook stack, until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from devstack.dynamodb import DynamoDBLocal
from devstack.postgres import PostgresServer
from devstack.processes import StartupError, is_running
from devstack.supervisor import AppProcess, CommandProcess, StackStopped, Supervisor, grpc_health, http_ok
from devstack.tools import (
    MissingPrerequisite,
    find_dynamodb_local_jar,
    find_java,
    find_postgres_binaries,
    project_root,
)

log = logging.getLogger("devstack")

STATE_FILE = "devstack.json"
# The HS256 secret the local gateway verifies bearer tokens with; generated once per state folder.
JWT_SECRET_FILE = "gateway-jwt-secret"  # noqa: S105 (a file name, not a secret)
DEV_TOKEN_TTL_HOURS = 24
# The customer token is for the demo customer the customer service seeds in the local stack.
DEV_CUSTOMER_ID = "0193a000-0000-7000-8000-000000000c01"  # services.customer.demo.DEMO_CUSTOMER_ID


@dataclass(frozen=True)
class Ports:
    """The stack's listening ports; the defaults stay clear of the standard 5432 and 8000."""

    pg_port: int = 55432
    dynamodb_port: int = 58000
    customer_port: int = 50151
    payment_port: int = 50152
    logging_port: int = 50153
    gateway_port: int = 58080
    # Where Prometheus scrapes each process (GET /metrics); 0 turns a process's endpoint off.
    customer_metrics_port: int = 59151
    payment_metrics_port: int = 59152
    logging_metrics_port: int = 59153
    gateway_metrics_port: int = 59080

    def metrics_port(self, process: str) -> int:
        port: int = getattr(self, f"{process}_metrics_port")
        return port


METRICS_ORDER = ("customer", "payment", "logging", "gateway")


@dataclass(frozen=True)
class StackEndpoints:
    """What the application processes need to know once the infrastructure is up."""

    postgres_dsn: str
    dynamodb_endpoint: str
    ports: Ports
    state_dir: Path


@dataclass(frozen=True)
class StackOptions:
    """What `up` or `infra` was asked for: where state lives, which ports, and whether the data may be thrown away."""

    state_dir: Path
    ports: Ports
    ephemeral: bool


AppFactory = Callable[[StackEndpoints], Sequence[AppProcess]]
ExtraLines = Callable[[StackEndpoints], Iterable[str]]
Starter = Callable[[StackOptions, AppFactory | None, Sequence[ExtraLines]], int]

AWS_LOCAL_ENV = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def gateway_jwt_secret(state_dir: Path) -> str:
    """The state folder's gateway signing secret, created (0600) on first use."""
    path = state_dir / JWT_SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return secret


def development_tokens(stack: StackEndpoints) -> list[str]:
    """Banner lines: one development bearer token per role, signed with the stack's gateway secret."""
    from chassis.identity import Role
    from gateway.tokens import mint_token

    secret = gateway_jwt_secret(stack.state_dir)
    ttl = timedelta(hours=DEV_TOKEN_TTL_HOURS)
    lines = [f"development bearer tokens (valid {DEV_TOKEN_TTL_HOURS} h; Authorization: Bearer <token>):"]
    for role in (Role.ADMIN, Role.OFFICER, Role.SERVICE):
        lines.append(f"  {role.value:<9} {mint_token(secret, role, f'dev-{role.value}', ttl=ttl)}")
    customer = mint_token(secret, Role.CUSTOMER, "dev-customer", customer_id=DEV_CUSTOMER_ID, ttl=ttl)
    lines.append(f"  {'customer':<9} {customer}")
    lines.append(f"            (the customer token is for the demo customer Casey Demo, customerId {DEV_CUSTOMER_ID})")
    return lines


def loanbook_apps(stack: StackEndpoints) -> list[AppProcess]:
    """The three services and the gateway, in dependency order (the others ship their own logs to logging)."""
    ports = stack.ports
    customer = f"127.0.0.1:{ports.customer_port}"
    payment = f"127.0.0.1:{ports.payment_port}"
    logging_addr = f"127.0.0.1:{ports.logging_port}"
    gateway = f"http://127.0.0.1:{ports.gateway_port}"
    python = sys.executable

    def otel(name: str) -> dict[str, str]:
        env = {"OTEL_SERVICE_NAME": f"loanbook-{name}", "PYTHONUNBUFFERED": "1"}
        if ports.metrics_port(name):
            env[f"LOANBOOK_{name.upper()}_METRICS_PORT"] = str(ports.metrics_port(name))
        return env

    def metrics(name: str) -> str:
        port = ports.metrics_port(name)
        return f", metrics http://127.0.0.1:{port}/metrics" if port else ""

    def grpc_service(name: str, address: str, env: Mapping[str, str]) -> AppProcess:
        """`python -m services.<name>` serving gRPC at `address`, ready once its health service says SERVING."""
        return AppProcess(
            name=name,
            argv=[python, "-m", f"services.{name}"],
            env={**otel(name), **env},
            readiness=grpc_health(address),
            endpoint=f"{address} (gRPC){metrics(name)}",
        )

    return [
        grpc_service(
            "logging",
            logging_addr,
            {
                **AWS_LOCAL_ENV,
                "LOANBOOK_LOGGING_GRPC_PORT": str(ports.logging_port),
                "LOANBOOK_LOGGING_POSTGRES_DSN": stack.postgres_dsn,
                "LOANBOOK_LOGGING_DYNAMODB_ENDPOINT": stack.dynamodb_endpoint,
            },
        ),
        grpc_service(
            "customer",
            customer,
            {
                "LOANBOOK_CUSTOMER_GRPC_PORT": str(ports.customer_port),
                "LOANBOOK_CUSTOMER_POSTGRES_DSN": stack.postgres_dsn,
                "LOANBOOK_CUSTOMER_SEED_DEMO_DATA": "true",
                "LOANBOOK_CUSTOMER_LOG_SHIPPING_ADDR": logging_addr,
            },
        ),
        grpc_service(
            "payment",
            payment,
            {
                **AWS_LOCAL_ENV,
                "LOANBOOK_PAYMENT_GRPC_PORT": str(ports.payment_port),
                "LOANBOOK_PAYMENT_POSTGRES_DSN": stack.postgres_dsn,
                "LOANBOOK_PAYMENT_DYNAMODB_ENDPOINT": stack.dynamodb_endpoint,
                "LOANBOOK_PAYMENT_CUSTOMER_ADDR": customer,
                "LOANBOOK_PAYMENT_LOG_SHIPPING_ADDR": logging_addr,
                # The workshop's switch file: ReadFromDynamoDB=false starts payments in dual_write.
                "LOANBOOK_PAYMENT_MIGRATION_SETTINGS_FILE": str(project_root() / "deploy" / "migration-settings.json"),
            },
        ),
        AppProcess(
            name="gateway",
            argv=[python, "-m", "gateway"],
            env={
                **otel("gateway"),
                "LOANBOOK_GATEWAY_HTTP_PORT": str(ports.gateway_port),
                "LOANBOOK_GATEWAY_CUSTOMER_ADDR": customer,
                "LOANBOOK_GATEWAY_PAYMENT_ADDR": payment,
                "LOANBOOK_GATEWAY_LOGGING_ADDR": logging_addr,
                "LOANBOOK_GATEWAY_SHIP_OWN_LOGS": "true",
                "LOANBOOK_GATEWAY_JWT_SECRET": gateway_jwt_secret(stack.state_dir),
            },
            readiness=http_ok(f"{gateway}/healthz"),
            endpoint=f"{gateway}{metrics('gateway')}",
        ),
    ]


def _read_state(state_dir: Path) -> dict[str, object] | None:
    try:
        loaded = json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _running_supervisor(state_dir: Path) -> int | None:
    state = _read_state(state_dir)
    pid = state.get("supervisor_pid") if state else None
    return pid if isinstance(pid, int) and is_running(pid) else None


def _write_state(state_dir: Path, pids: Mapping[str, int]) -> None:
    path = state_dir / STATE_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"supervisor_pid": os.getpid(), "processes": dict(pids)}, indent=2))
    temporary.replace(path)


def ready_block(stack: StackEndpoints, apps: Sequence[AppProcess], extra_lines: Sequence[ExtraLines]) -> str:
    lines = [
        "devstack is ready:",
        f"  {'PostgreSQL':<12} {stack.postgres_dsn}",
        f"  {'DynamoDB':<12} {stack.dynamodb_endpoint}",
        *(f"  {app.name:<12} {app.endpoint}" for app in apps if app.endpoint),
        f"  {'state':<12} {stack.state_dir} (logs: *.log there and in logs/)",
    ]
    for extra in extra_lines:
        lines.extend(f"  {line}" for line in extra(stack))
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


async def run_stack(options: StackOptions, apps: AppFactory | None, extra_lines: Sequence[ExtraLines] = ()) -> int:
    """Start infrastructure (and apps when `apps` is given), print the endpoints, run until stopped."""
    state_dir = options.state_dir
    running = _running_supervisor(state_dir)
    if running is not None:
        print(
            f"devstack: already running from {state_dir} (pid {running}); use `devstack stop`",
            file=sys.stderr,
        )
        return 1
    ports = options.ports
    try:
        # Every prerequisite is checked before anything starts, so a missing one costs no start-up time.
        binaries = find_postgres_binaries()
        java = find_java()
        jar = find_dynamodb_local_jar()
    except MissingPrerequisite as exc:
        print(f"devstack: {exc}", file=sys.stderr, flush=True)
        return 1
    postgres = PostgresServer(state_dir, port=ports.pg_port, ephemeral=options.ephemeral, binaries=binaries)
    dynamodb = DynamoDBLocal(state_dir, port=ports.dynamodb_port, ephemeral=options.ephemeral, java=java, jar=jar)
    supervisor = Supervisor(on_change=lambda pids: _write_state(state_dir, pids))
    supervisor.install_signal_handlers()
    _write_state(state_dir, {})
    try:
        await supervisor.start(postgres)
        await supervisor.start(dynamodb)
        stack = StackEndpoints(postgres.dsn, dynamodb.endpoint, ports, state_dir)
        app_list = list(apps(stack)) if apps is not None else []
        for app in app_list:
            await supervisor.start(CommandProcess(app, log_dir=state_dir / "logs", cwd=project_root()))
        print(ready_block(stack, app_list, extra_lines), flush=True)
        return await supervisor.wait()
    except StackStopped:
        return supervisor.exit_code
    except (StartupError, MissingPrerequisite) as exc:
        print(f"devstack: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        await supervisor.stop_all()
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        log.info("stopped")


def start_stack(options: StackOptions, apps: AppFactory | None, extra_lines: Sequence[ExtraLines]) -> int:
    """Runs the stack in this process until it stops and returns the exit code (130 after Ctrl-C)."""
    logging.basicConfig(level=logging.INFO, format="devstack: %(message)s", stream=sys.stderr)
    # Readiness probes poll over HTTP; one log line per probe would bury the useful ones.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    options.state_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run_stack(options, apps, extra_lines))
    return 130


def status(state_dir: Path) -> int:
    state = _read_state(state_dir)
    supervisor = _running_supervisor(state_dir)
    if state is None or supervisor is None:
        print(f"devstack: not running from {state_dir}")
        return 3
    print(f"devstack: running from {state_dir} (supervisor pid {supervisor})")
    processes = state.get("processes")
    if isinstance(processes, dict):
        for name, pid in processes.items():
            alive = isinstance(pid, int) and is_running(pid)
            print(f"  {name:<14} pid {pid} {'running' if alive else 'gone'}")
    return 0


def stop(state_dir: Path, timeout: float = 60.0) -> int:
    supervisor = _running_supervisor(state_dir)
    if supervisor is None:
        print(f"devstack: not running from {state_dir}")
        return 0
    os.kill(supervisor, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while is_running(supervisor):
        if time.monotonic() > deadline:
            print(f"devstack: supervisor pid {supervisor} still running after {timeout:.0f} s", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print("devstack: stopped")
    return 0


# --- the command line ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wiring:
    """What `main` lets a caller replace: the application processes, extra banner lines, how a stack is run."""

    apps: AppFactory = loanbook_apps
    extra_lines: Sequence[ExtraLines] = ()
    start: Starter = start_stack


DEFAULT_PORTS = Ports()
DEFAULT_METRICS_PORTS = ",".join(str(DEFAULT_PORTS.metrics_port(name)) for name in METRICS_ORDER)


def _ports(listed: str) -> list[int]:
    """`--metrics-ports` as four port numbers, refused with the reason otherwise."""
    values = [value.strip() for value in listed.split(",")]
    if len(values) != len(METRICS_ORDER) or not all(v.isdigit() and int(v) <= 65535 for v in values):
        raise typer.BadParameter(f"give four ports for {','.join(METRICS_ORDER)}, e.g. {DEFAULT_METRICS_PORTS}")
    return [int(value) for value in values]


DEFAULT_STATE_DIR = project_root() / ".devstack"

app = typer.Typer(
    name="devstack",
    help=__doc__,
    no_args_is_help=True,
    add_completion=False,  # no completion installers: the options stay the ones the README documents
    context_settings={"help_option_names": ["-h", "--help"]},  # -h worked before the move to Typer
    pretty_exceptions_show_locals=False,  # locals may hold DSNs with passwords
)

StateDir = Annotated[
    Path,
    typer.Option(
        envvar="DEVSTACK_STATE_DIR",
        show_default=False,
        help="folder for data, logs and secrets (default <project>/.devstack)",
    ),
]
PgPort = Annotated[int, typer.Option(envvar="DEVSTACK_PG_PORT", help="PostgreSQL's port")]
DynamoDBPort = Annotated[int, typer.Option(envvar="DEVSTACK_DYNAMODB_PORT", help="DynamoDB Local's port")]
CustomerPort = Annotated[int, typer.Option(envvar="DEVSTACK_CUSTOMER_PORT", help="the customer service's gRPC port")]
PaymentPort = Annotated[int, typer.Option(envvar="DEVSTACK_PAYMENT_PORT", help="the payment service's gRPC port")]
LoggingPort = Annotated[int, typer.Option(envvar="DEVSTACK_LOGGING_PORT", help="the logging service's gRPC port")]
GatewayPort = Annotated[int, typer.Option(envvar="DEVSTACK_GATEWAY_PORT", help="the gateway's HTTP port")]
MetricsPorts = Annotated[
    str,
    typer.Option(
        envvar="DEVSTACK_METRICS_PORTS",
        help="Prometheus ports of customer,payment,logging,gateway (comma-separated; 0 turns one off)",
    ),
]
Ephemeral = Annotated[
    bool, typer.Option("--ephemeral", help="throw-away speed settings: fsync off, DynamoDB in memory")
]


# `infra` and `up` each list the options they share: Typer reads a command's options from its signature (the
# option types, with their variables and help, are declared once above).
@app.command("infra")
def infra_command(
    ctx: typer.Context,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    pg_port: PgPort = DEFAULT_PORTS.pg_port,
    dynamodb_port: DynamoDBPort = DEFAULT_PORTS.dynamodb_port,
    ephemeral: Ephemeral = False,
) -> None:
    """PostgreSQL and DynamoDB Local until Ctrl-C."""
    wiring = ctx.ensure_object(Wiring)
    options = StackOptions(state_dir.resolve(), Ports(pg_port=pg_port, dynamodb_port=dynamodb_port), ephemeral)
    raise typer.Exit(wiring.start(options, None, wiring.extra_lines))


@app.command("up")
def up_command(
    ctx: typer.Context,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    pg_port: PgPort = DEFAULT_PORTS.pg_port,
    dynamodb_port: DynamoDBPort = DEFAULT_PORTS.dynamodb_port,
    customer_port: CustomerPort = DEFAULT_PORTS.customer_port,
    payment_port: PaymentPort = DEFAULT_PORTS.payment_port,
    logging_port: LoggingPort = DEFAULT_PORTS.logging_port,
    gateway_port: GatewayPort = DEFAULT_PORTS.gateway_port,
    metrics_ports: MetricsPorts = DEFAULT_METRICS_PORTS,
    ephemeral: Ephemeral = False,
) -> None:
    """Infrastructure plus the loanbook services, until Ctrl-C."""
    wiring = ctx.ensure_object(Wiring)
    ports = Ports(
        pg_port, dynamodb_port, customer_port, payment_port, logging_port, gateway_port, *_ports(metrics_ports)
    )
    raise typer.Exit(wiring.start(StackOptions(state_dir.resolve(), ports, ephemeral), wiring.apps, wiring.extra_lines))


@app.command("status")
def status_command(state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Show whether a stack runs from this state folder (exit code 3 when none does)."""
    raise typer.Exit(status(state_dir.resolve()))


@app.command("stop")
def stop_command(state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Stop the stack running from this state folder."""
    raise typer.Exit(stop(state_dir.resolve()))


def main(
    argv: Sequence[str] | None = None,
    *,
    apps: AppFactory = loanbook_apps,
    extra_lines: Sequence[ExtraLines] = (),
    start: Starter = start_stack,
) -> int:
    """Entry point returning the exit code; `apps`, `extra_lines` and `start` are injection points (tests, tokens)."""
    try:
        app(args=argv, prog_name="devstack", obj=Wiring(apps, extra_lines, start))
    except SystemExit as exited:
        # Typer ends every run, a successful one too, with SystemExit carrying the exit code.
        return exited.code if isinstance(exited.code, int) else (0 if exited.code is None else 1)
    return 0
