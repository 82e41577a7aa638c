"""Test infrastructure: an explicit address, else testcontainers if Docker answers, else local processes."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from devstack.dynamodb import DynamoDBLocal, http_answers
from devstack.postgres import PostgresServer
from devstack.processes import ChildProcess, StartupError

POSTGRES_ENV = "LOANBOOK_TEST_POSTGRES_DSN"
DYNAMODB_ENV = "LOANBOOK_TEST_DYNAMODB_ENDPOINT"
POSTGRES_IMAGE = "postgres:15"
DYNAMODB_IMAGE = "amazon/dynamodb-local"

DockerProbe = Callable[[], bool]
Backend = Literal["env", "docker", "local"]
ServerT = TypeVar("ServerT", bound=ChildProcess)


def docker_available(client_factory: Callable[..., Any] | None = None, timeout: float = 2.0) -> bool:
    """True only if a Docker daemon answers a ping quickly; any failure at all means no."""
    try:
        if client_factory is None:
            import docker

            client_factory = docker.from_env
        client = client_factory(timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@dataclass(frozen=True)
class Selection:
    backend: Backend
    address: str | None = None


def select_backend(variable: str, env: Mapping[str, str], docker_probe: DockerProbe) -> Selection:
    """The one switch between external, container and local infrastructure; probes Docker only if needed."""
    explicit = env.get(variable, "").strip()
    if explicit:
        return Selection("env", explicit)
    if docker_probe():
        return Selection("docker")
    return Selection("local")


@asynccontextmanager
async def _state_dir_or_scratch(state_dir: Path | None, prefix: str) -> AsyncIterator[Path]:
    """`state_dir` when one is given, else a fresh scratch folder that is removed afterwards."""
    if state_dir is not None:
        yield state_dir
        return
    # mkdtemp makes 0700 folders; search-only access for others lets an unprivileged PostgreSQL reach its
    # data without relocating it to /var/lib.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o711)  # noqa: S103
    try:
        yield path
    finally:
        await asyncio.to_thread(shutil.rmtree, path, ignore_errors=True)


@asynccontextmanager
async def _postgres_container() -> AsyncIterator[str]:
    from testcontainers.community.postgres import PostgresContainer

    # A fresh random secret per container: nothing to leak, nothing to keep.
    container = PostgresContainer(
        POSTGRES_IMAGE, username="loanbook", password=secrets.token_urlsafe(16), dbname="loanbook"
    )
    await asyncio.to_thread(container.start)
    try:
        yield str(container.get_connection_url(driver=None))
    finally:
        await asyncio.to_thread(container.stop)


@asynccontextmanager
async def _dynamodb_container() -> AsyncIterator[str]:
    from testcontainers.core.container import DockerContainer

    container = DockerContainer(DYNAMODB_IMAGE).with_exposed_ports(8000)
    await asyncio.to_thread(container.start)
    try:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(8000)
        endpoint = f"http://{host}:{port}"
        for _ in range(300):
            if await http_answers(endpoint):
                break
            await asyncio.sleep(0.1)
        else:
            raise StartupError(f"DynamoDB Local container at {endpoint} did not answer within 30 s")
        yield endpoint
    finally:
        await asyncio.to_thread(container.stop)


@asynccontextmanager
async def _local_server(
    state_dir: Path | None, prefix: str, server: Callable[[Path], ServerT], address: Callable[[ServerT], str]
) -> AsyncIterator[str]:
    """A throw-away `server` run in `state_dir` (else a scratch folder), yielding its `address` until it stops."""
    async with _state_dir_or_scratch(state_dir, prefix) as folder, server(folder) as running:
        yield address(running)


def _local_postgres(state_dir: Path | None) -> AbstractAsyncContextManager[str]:
    return _local_server(
        state_dir, "loanbook-pg-", lambda folder: PostgresServer(folder, ephemeral=True), lambda pg: pg.dsn
    )


def _local_dynamodb(state_dir: Path | None) -> AbstractAsyncContextManager[str]:
    return _local_server(
        state_dir, "loanbook-ddb-", lambda folder: DynamoDBLocal(folder, ephemeral=True), lambda ddb: ddb.endpoint
    )


@asynccontextmanager
async def _given(address: str) -> AsyncIterator[str]:
    yield address


def _for_tests(
    variable: str,
    env: Mapping[str, str] | None,
    docker_probe: DockerProbe,
    container: Callable[[], AbstractAsyncContextManager[str]],
    local: Callable[[], AbstractAsyncContextManager[str]],
) -> AbstractAsyncContextManager[str]:
    """The address in `variable` if set, else a `container` if Docker answers, else a `local` process."""
    selection = select_backend(variable, os.environ if env is None else env, docker_probe)
    if selection.backend == "env" and selection.address is not None:
        return _given(selection.address)
    if selection.backend == "docker":
        return container()
    return local()


def postgres_for_tests(
    env: Mapping[str, str] | None = None,
    docker_probe: DockerProbe = docker_available,
    state_dir: Path | None = None,
) -> AbstractAsyncContextManager[str]:
    """An async context manager yielding a DSN for the `loanbook` app role."""
    return _for_tests(POSTGRES_ENV, env, docker_probe, _postgres_container, lambda: _local_postgres(state_dir))


def dynamodb_for_tests(
    env: Mapping[str, str] | None = None,
    docker_probe: DockerProbe = docker_available,
    state_dir: Path | None = None,
) -> AbstractAsyncContextManager[str]:
    """An async context manager yielding a DynamoDB endpoint URL."""
    return _for_tests(DYNAMODB_ENV, env, docker_probe, _dynamodb_container, lambda: _local_dynamodb(state_dir))
