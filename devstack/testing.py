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
from typing import Any, Literal

from devstack.dynamodb import DynamoDBLocal, http_answers
from devstack.postgres import PostgresServer
from devstack.processes import StartupError

POSTGRES_ENV = "LOANBOOK_TEST_POSTGRES_DSN"
DYNAMODB_ENV = "LOANBOOK_TEST_DYNAMODB_ENDPOINT"
POSTGRES_IMAGE = "postgres:15"
DYNAMODB_IMAGE = "amazon/dynamodb-local"

DockerProbe = Callable[[], bool]
Backend = Literal["env", "docker", "local"]


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
async def _scratch_dir(prefix: str) -> AsyncIterator[Path]:
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
async def _local_postgres(state_dir: Path | None) -> AsyncIterator[str]:
    if state_dir is not None:
        async with PostgresServer(state_dir, ephemeral=True) as server:
            yield server.dsn
        return
    async with _scratch_dir("loanbook-pg-") as scratch, PostgresServer(scratch, ephemeral=True) as server:
        yield server.dsn


@asynccontextmanager
async def _local_dynamodb(state_dir: Path | None) -> AsyncIterator[str]:
    if state_dir is not None:
        async with DynamoDBLocal(state_dir, ephemeral=True) as server:
            yield server.endpoint
        return
    async with _scratch_dir("loanbook-ddb-") as scratch, DynamoDBLocal(scratch, ephemeral=True) as server:
        yield server.endpoint


@asynccontextmanager
async def _given(address: str) -> AsyncIterator[str]:
    yield address


def postgres_for_tests(
    env: Mapping[str, str] | None = None,
    docker_probe: DockerProbe = docker_available,
    state_dir: Path | None = None,
) -> AbstractAsyncContextManager[str]:
    """An async context manager yielding a DSN for the `loanbook` app role."""
    selection = select_backend(POSTGRES_ENV, os.environ if env is None else env, docker_probe)
    if selection.backend == "env" and selection.address is not None:
        return _given(selection.address)
    if selection.backend == "docker":
        return _postgres_container()
    return _local_postgres(state_dir)


def dynamodb_for_tests(
    env: Mapping[str, str] | None = None,
    docker_probe: DockerProbe = docker_available,
    state_dir: Path | None = None,
) -> AbstractAsyncContextManager[str]:
    """An async context manager yielding a DynamoDB endpoint URL."""
    selection = select_backend(DYNAMODB_ENV, os.environ if env is None else env, docker_probe)
    if selection.backend == "env" and selection.address is not None:
        return _given(selection.address)
    if selection.backend == "docker":
        return _dynamodb_container()
    return _local_dynamodb(state_dir)
