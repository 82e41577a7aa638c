"""The wheel, installed with only the runtime lock into a fresh virtualenv outside the tree, runs every process.

What the image does (deploy/Dockerfile), minus the container: build the wheel from the sources, install it with
requirements.runtime.lock and nothing else, then start each entry point from a folder that is not the repository.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import httpx
import pytest

from devstack.processes import free_port
from devstack.supervisor import grpc_health, http_ok
from tests.support.dynamodb import delete_table_if_present, local_session
from tests.support.system import PROJECT_ROOT, RunningProcess

UV = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
PROCESSES = ("logging", "customer", "payment", "gateway")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    outside: Path  # the working folder of every command: not the repository

    def bin(self, script: str) -> str:
        return str(self.venv / "bin" / script)


def wheel_layout() -> dict[str, str]:
    """Each package pyproject.toml lists (a source folder) -> where it lands in the wheel."""
    wheel = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    layout = {}
    for package in wheel["packages"]:
        target = package
        for source, replacement in wheel.get("sources", {}).items():
            if PurePosixPath(package).is_relative_to(source):
                target = str(PurePosixPath(replacement) / PurePosixPath(package).relative_to(source))
        layout[package] = target
    return layout


def uv(*args: str) -> None:
    subprocess.run([UV, *args], check=True, capture_output=True, text=True, env={**os.environ, "UV_NO_PROGRESS": "1"})


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("installed-wheel")
    # The project venv's python has hatchling (a dev dependency): no build environment to download.
    uv("build", "--wheel", "--no-build-isolation", "--python", sys.executable, "--out-dir", str(base / "dist"), "-q")
    (wheel,) = (base / "dist").glob("loanbook-*.whl")
    venv = base / "venv"
    uv("venv", "-q", "--python", sys.executable, str(venv))
    # As the image installs it: exactly the runtime lock and the wheel, then a check that nothing is missing.
    lock = str(PROJECT_ROOT / "requirements.runtime.lock")
    python = str(venv / "bin" / "python")
    uv("pip", "install", "-q", "--python", python, "--no-deps", "--compile-bytecode", "-r", lock, str(wheel))
    uv("pip", "check", "-q", "--python", python)
    outside = base / "cwd"
    outside.mkdir()
    return Installed(wheel, venv, outside)


def base_env(installed: Installed) -> dict[str, str]:
    """A clean environment: the venv first on PATH, nothing of the project's (no PYTHONPATH, no VIRTUAL_ENV)."""
    return {
        "PATH": f"{installed.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(installed.outside),
        "LANG": "C.UTF-8",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


async def run(
    installed: Installed, argv: Sequence[str], env: Mapping[str, str], timeout: float = 60
) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=installed.outside,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode()


def test_the_wheel_holds_every_file_of_every_package_pyproject_lists(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
        console_scripts = archive.read(entry_points).decode()
    for package, target in wheel_layout().items():
        folder = PROJECT_ROOT / package
        sources = [
            path
            for path in folder.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
        ]
        assert (folder / "__init__.py") in sources, f"{package} is no package"
        missing = [
            str(path.relative_to(PROJECT_ROOT))
            for path in sources
            if str(PurePosixPath(target) / path.relative_to(folder).as_posix()) not in names
        ]
        assert missing == [], f"the wheel lacks {missing} (hatchling skips what it cannot find without a word)"
    scripts = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for script, target in scripts.items():
        assert f"{script} = {target}" in console_scripts


@pytest.fixture
async def table_prefix(dynamodb_endpoint: str) -> AsyncIterator[str]:
    """A DynamoDB table prefix of this test's own; the tables the services create are deleted afterwards (the log
    table has TTL: see tests/integration/conftest.py for why none may outlive its test)."""
    prefix = f"wheel-{secrets.token_hex(4)}"
    yield prefix
    async with local_session().client("dynamodb", endpoint_url=dynamodb_endpoint) as client:
        for table in ("payments", "logs"):
            await delete_table_if_present(client, f"{prefix}-{table}")


async def test_every_entry_point_runs_from_a_clean_virtualenv_outside_the_tree(
    installed: Installed, postgres_dsn: str, dynamodb_endpoint: str, table_prefix: str
) -> None:
    env = base_env(installed)
    # Imports resolve to the venv, never to the sources.
    code, out = await run(
        installed, [installed.bin("python"), "-c", "import chassis, loanbook; print(chassis.__file__)"], env
    )
    assert code == 0, out
    assert Path(out.strip()).is_relative_to(installed.venv)

    toolkit_env = {
        **env,
        "LOANBOOK_MIGRATION_POSTGRES_DSN": postgres_dsn,
        "LOANBOOK_MIGRATION_DYNAMODB_ENDPOINT": dynamodb_endpoint,
        "LOANBOOK_MIGRATION_DYNAMODB_TABLE_PREFIX": table_prefix,
    }
    code, out = await run(installed, [installed.bin("loanbook"), "schema", "upgrade"], toolkit_env)
    assert code == 0, out
    assert [line.split()[0] for line in out.splitlines()] == ["customer", "payment", "logging", "migration"]

    # The gateway's signing secret comes from a file, as in a container (LOANBOOK_SECRETS_DIR).
    secrets_dir = installed.outside / "secrets"
    secrets_dir.mkdir(exist_ok=True)
    (secrets_dir / "LOANBOOK_GATEWAY_JWT_SECRET").write_text(secrets.token_urlsafe(48) + "\n")
    ports = {name: free_port() for name in PROCESSES}
    metrics = {name: free_port() for name in PROCESSES}
    addresses = {name: f"127.0.0.1:{ports[name]}" for name in PROCESSES}
    own = {name: {f"LOANBOOK_{name.upper()}_METRICS_PORT": str(metrics[name])} for name in PROCESSES}
    for name in ("logging", "customer", "payment"):
        own[name] |= {
            f"LOANBOOK_{name.upper()}_GRPC_PORT": str(ports[name]),
            f"LOANBOOK_{name.upper()}_POSTGRES_DSN": postgres_dsn,
            f"LOANBOOK_{name.upper()}_MIGRATE_ON_START": "false",  # `loanbook schema upgrade` did it
        }
    for name in ("logging", "payment"):
        own[name] |= {
            f"LOANBOOK_{name.upper()}_DYNAMODB_ENDPOINT": dynamodb_endpoint,
            f"LOANBOOK_{name.upper()}_DYNAMODB_TABLE_PREFIX": table_prefix,
        }
    own["payment"]["LOANBOOK_PAYMENT_CUSTOMER_ADDR"] = addresses["customer"]
    own["customer"]["LOANBOOK_CUSTOMER_LOG_SHIPPING_ADDR"] = addresses["logging"]
    own["gateway"] |= {
        "LOANBOOK_GATEWAY_HTTP_PORT": str(ports["gateway"]),
        "LOANBOOK_GATEWAY_CUSTOMER_ADDR": addresses["customer"],
        "LOANBOOK_GATEWAY_PAYMENT_ADDR": addresses["payment"],
        "LOANBOOK_GATEWAY_LOGGING_ADDR": addresses["logging"],
        "LOANBOOK_SECRETS_DIR": str(secrets_dir),
    }
    gateway_url = f"http://127.0.0.1:{ports['gateway']}"
    readiness = {name: grpc_health(addresses[name]) for name in ("logging", "customer", "payment")}
    readiness["gateway"] = http_ok(f"{gateway_url}/readyz")

    processes: dict[str, RunningProcess] = {}
    try:
        for name in PROCESSES:  # the services at once, the gateway once they serve (its readiness asks them)
            log_path = installed.outside / f"{name}.log"
            with log_path.open("wb") as log:
                process = await asyncio.create_subprocess_exec(
                    installed.bin(f"loanbook-{name}"),
                    cwd=installed.outside,
                    env={**env, **own[name]},
                    stdout=log,
                    stderr=log,
                )
            processes[name] = RunningProcess(name, process, log_path)
            if name == "payment":
                await asyncio.gather(*(processes[s].wait_until_ready(readiness[s], timeout=40) for s in processes))
        await processes["gateway"].wait_until_ready(readiness["gateway"], timeout=40)

        async with httpx.AsyncClient(timeout=5) as client:
            for name in PROCESSES:  # each process's Prometheus endpoint, from the runtime lock's exporter
                response = await client.get(f"http://127.0.0.1:{metrics[name]}/metrics")
                assert response.status_code == 200, name
                assert "# TYPE process_cpu_seconds_total counter" in response.text, name

        code, out = await run(installed, [installed.bin("loanbook"), "migrate", "status"], toolkit_env)
        assert code == 0, out
        assert "payments" in out

        healthcheck = installed.bin("loanbook-healthcheck")
        for name in ("logging", "customer", "payment"):
            assert await run(installed, [healthcheck, f"grpc://{addresses[name]}"], env) == (0, "")
        readiness_target = {**env, "LOANBOOK_HEALTHCHECK_TARGET": f"grpc://{addresses['payment']}/"}
        assert await run(installed, [healthcheck], readiness_target) == (0, "")
        assert await run(installed, [healthcheck, f"{gateway_url}/livez"], env) == (0, "")
        code, out = await run(installed, [healthcheck, f"grpc://{addresses['payment']}/no.such.Service"], env)
        assert (code, out.strip()) == (1, "loanbook-healthcheck: unhealthy: NOT_FOUND")
        # `python -m` still runs a module of the installed wheel.
        closed = [installed.bin("python"), "-m", "chassis.healthcheck", f"grpc://127.0.0.1:{free_port()}"]
        code, out = await run(installed, closed, env)
        assert code == 1
        assert "unhealthy: UNAVAILABLE" in out

        for name in reversed(PROCESSES):
            assert await processes[name].terminate() == 0, processes[name].log()
    finally:
        for running in processes.values():
            if running.process.returncode is None:
                running.process.kill()
                await running.process.wait()
