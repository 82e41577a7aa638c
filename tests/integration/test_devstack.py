"""Real PostgreSQL, DynamoDB Local and supervisor processes: they start, serve, stop and never leak."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import stat
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from devstack.dynamodb import DynamoDBLocal
from devstack.postgres import RELOCATION_ROOT, PostgresServer
from devstack.processes import descendants, is_running, wait_gone
from devstack.supervisor import grpc_health
from tests.support.dynamodb import local_session

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="the unprivileged-account path runs only as root")


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A temp folder an unprivileged PostgreSQL account can traverse (pytest's own tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="devstack-test-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


async def query(dsn: str, sql: str) -> object:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()


async def test_postgres_serves_the_app_role_and_leaves_no_process_after_stop(scratch: Path) -> None:
    server = PostgresServer(scratch / "state", ephemeral=True)
    await server.start()
    try:
        assert server.pid is not None
        assert await query(server.dsn, "SELECT current_user") == "loanbook"
        assert await query(server.dsn, "SELECT current_database()") == "loanbook"
        assert await query(server.admin_dsn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        processes = [server.pid, *descendants(server.pid)]
        assert len(processes) > 1, "expected the postmaster's background processes"
    finally:
        await server.stop()

    assert not [pid for pid in processes if is_running(pid)]


@ROOT_ONLY
async def test_postgres_started_by_root_runs_as_an_unprivileged_account(scratch: Path) -> None:
    async with PostgresServer(scratch / "state", ephemeral=True) as server:
        assert server.pid is not None
        assert uid_of(server.pid) != 0
        assert server.run_as is not None
        assert uid_of(server.pid) == server.run_as.uid
        assert stat.S_IMODE(server.password_file.stat().st_mode) == 0o600
        assert server.password_file.stat().st_uid == 0


async def test_data_and_password_survive_a_restart_on_the_same_state_folder(scratch: Path) -> None:
    async with PostgresServer(scratch / "state") as first:
        await query(first.dsn, "CREATE TABLE kept AS SELECT 42 AS answer")
        first_dsn_password = first.dsn.split(":")[2].split("@")[0]

    async with PostgresServer(scratch / "state") as second:
        assert await query(second.dsn, "SELECT answer FROM kept") == 42
        assert second.dsn.split(":")[2].split("@")[0] == first_dsn_password


@ROOT_ONLY
async def test_a_state_folder_under_a_private_parent_gets_its_data_relocated_to_var_lib(
    scratch: Path,
) -> None:
    private_home = scratch / "home"
    private_home.mkdir(mode=0o700)
    state = private_home / "project" / ".devstack"
    server = PostgresServer(state, ephemeral=True)
    try:
        await server.start()
        assert server.run_as is not None
        assert server.data_root.parent == RELOCATION_ROOT
        assert server.data_root.name.startswith("project-")
        assert (state / "postgres" / "cluster").is_symlink()
        assert (state / "postgres" / "cluster").resolve() == server.data_root
        assert server.data_root.stat().st_uid == server.run_as.uid
        assert stat.S_IMODE(server.data_root.stat().st_mode) == 0o700
        assert await query(server.dsn, "SELECT 1") == 1
    finally:
        await server.stop()
        shutil.rmtree(server.data_root, ignore_errors=True)


async def test_dynamodb_local_creates_and_lists_tables_and_leaves_no_process_after_stop(
    scratch: Path,
) -> None:
    server = DynamoDBLocal(scratch / "state", ephemeral=True)
    await server.start()
    try:
        session = local_session()
        async with session.client("dynamodb", endpoint_url=server.endpoint) as client:
            await client.create_table(
                TableName="payments",
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
            tables = await client.list_tables()
        assert tables["TableNames"] == ["payments"]
        assert server.pid is not None
        pid = server.pid
    finally:
        await server.stop()

    assert not is_running(pid)


async def test_grpc_readiness_waits_for_serving_status() -> None:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    probe = grpc_health(f"127.0.0.1:{port}")
    assert not await probe(), "nothing listens yet"
    await server.start()
    try:
        await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert not await probe()
        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert await probe()
    finally:
        await server.stop(None)


# A stand-in for the loanbook services: serves GET /healthz with 200 on the port in FAKE_PORT.
FAKE_APP = textwrap.dedent(
    """
    import http.server, os
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()
        def log_message(self, *args):
            pass
    http.server.HTTPServer(("127.0.0.1", int(os.environ["FAKE_PORT"])), Handler).serve_forever()
    """
)

# `python -m devstack up` with the application list swapped for two fake processes.
UP_WITH_FAKE_APPS = textwrap.dedent(
    """
    import sys
    from devstack.cli import main
    from devstack.processes import free_port
    from devstack.supervisor import AppProcess, http_ok

    def fake_apps(stack):
        apps = []
        for name in ("fake-customer", "fake-gateway"):
            port = free_port()
            apps.append(AppProcess(
                name=name,
                argv=[sys.executable, "-c", FAKE_APP],
                env={"FAKE_PORT": str(port), "DSN_SEEN": stack.postgres_dsn},
                readiness=http_ok(f"http://127.0.0.1:{port}/healthz"),
                endpoint=f"http://127.0.0.1:{port}",
            ))
        return apps

    sys.exit(main(sys.argv[1:], apps=fake_apps))
    """
)


class RunningStack:
    def __init__(self, process: asyncio.subprocess.Process, state_dir: Path, stderr_path: Path) -> None:
        self.process = process
        self.state_dir = state_dir
        self.stderr_path = stderr_path
        state = json.loads((state_dir / "devstack.json").read_text())
        self.pids: dict[str, int] = state["processes"]
        # Snapshot now: PostgreSQL's backends are reparented (and so untraceable) once the postmaster dies.
        self.all_pids = [pid for child in self.pids.values() for pid in (child, *descendants(child))]

    def stderr(self) -> str:
        return self.stderr_path.read_text()


@contextlib.asynccontextmanager
async def up_with_fake_apps(scratch: Path) -> AsyncIterator[RunningStack]:
    state_dir = scratch / "state"
    stderr_path = scratch / "supervisor.stderr"
    script = f"FAKE_APP = {FAKE_APP!r}\n{UP_WITH_FAKE_APPS}"
    argv = ["up", "--state-dir", str(state_dir), "--pg-port", "0", "--dynamodb-port", "0", "--ephemeral"]
    with stderr_path.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, *argv, stdout=asyncio.subprocess.PIPE, stderr=stderr
        )
    try:
        assert process.stdout is not None
        banner: list[str] = []
        while not banner or banner[-1] != "Press Ctrl-C to stop.":
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            if not line:
                raise AssertionError(f"stack did not come up:\n{stderr_path.read_text()}")
            banner.append(line.decode().rstrip())
        stack = RunningStack(process, state_dir, stderr_path)
        assert set(stack.pids) == {"postgres", "dynamodb-local", "fake-customer", "fake-gateway"}
        yield stack
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_sigterm_to_the_supervisor_stops_every_child(scratch: Path) -> None:
    async with up_with_fake_apps(scratch) as stack:
        stack.process.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(stack.process.wait(), 30)

        assert returncode == 0, stack.stderr()
        assert not [pid for pid in stack.all_pids if is_running(pid)]
        assert not (stack.state_dir / "devstack.json").exists()


async def test_sigkill_of_the_supervisor_leaves_no_orphan(scratch: Path) -> None:
    async with up_with_fake_apps(scratch) as stack:
        stack.process.kill()
        await stack.process.wait()

        assert await wait_gone(stack.all_pids, within=5.0), [pid for pid in stack.all_pids if is_running(pid)]


async def test_a_child_that_dies_is_reported_and_the_stack_stops_with_an_error(scratch: Path) -> None:
    async with up_with_fake_apps(scratch) as stack:
        dynamodb_pid = stack.pids["dynamodb-local"]
        os.kill(dynamodb_pid, signal.SIGKILL)
        returncode = await asyncio.wait_for(stack.process.wait(), 30)

        assert returncode == 1
        assert (
            f"devstack: dynamodb-local (pid {dynamodb_pid}) exited unexpectedly with code -9; "
            "stopping the stack" in stack.stderr()
        )
        assert not [pid for pid in stack.all_pids if is_running(pid)]


async def run_cli(*argv: str, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "devstack", *argv, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def test_infra_without_postgres_binaries_says_what_to_install(scratch: Path) -> None:
    empty = scratch / "empty"
    empty.mkdir()
    env = {**os.environ, "LOANBOOK_PG_BIN": str(empty)}

    returncode, stderr = await run_cli("infra", "--state-dir", str(scratch / "state"), env=env)

    assert returncode == 1
    assert f"PostgreSQL 15 server binaries not found (looked in {empty} (LOANBOOK_PG_BIN))" in stderr
    assert "apt-get install postgresql-15" in stderr
    assert "Traceback" not in stderr


async def test_infra_without_java_says_what_to_install(scratch: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "JAVA_HOME"}
    env["PATH"] = str(scratch)

    returncode, stderr = await run_cli("infra", "--state-dir", str(scratch / "state"), env=env)

    assert returncode == 1
    assert "Java runtime not found" in stderr
    assert "openjdk-17-jre-headless" in stderr
    assert "Traceback" not in stderr


async def test_status_lists_the_running_children_and_stop_ends_the_stack(scratch: Path) -> None:
    async with up_with_fake_apps(scratch) as stack:
        state = str(stack.state_dir)
        status = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "devstack", "status", "--state-dir", state, stdout=asyncio.subprocess.PIPE
        )
        listing = (await status.communicate())[0].decode()
        assert status.returncode == 0
        assert f"postgres       pid {stack.pids['postgres']} running" in listing

        returncode, _ = await run_cli("stop", "--state-dir", state, env=dict(os.environ))

        assert returncode == 0
        assert stack.process.returncode is not None or await stack.process.wait() == 0
        assert not [pid for pid in stack.all_pids if is_running(pid)]


async def test_the_session_fixtures_provide_a_working_postgres_and_dynamodb(
    postgres_dsn: str, dynamodb_endpoint: str
) -> None:
    assert await query(postgres_dsn, "SELECT current_user") == "loanbook"
    session = local_session()
    async with session.client("dynamodb", endpoint_url=dynamodb_endpoint) as client:
        assert "TableNames" in await client.list_tables()
