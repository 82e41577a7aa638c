"""The production overlay's exec probe asks a mutual-TLS gRPC server for its health, which the kubelet cannot."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chassis.config import GrpcServiceSettings
from chassis.grpc_server import GrpcServer, ReadinessCheck, ServiceBinding

PROBE = (
    Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "overlays" / "production" / "grpc_health_probe.py"
)
SERVER_NAME = "customer"  # the Service name the certificate carries, as cert-manager would issue it


def _issue(directory: Path, ca_name: str) -> Path:
    """A CA and one certificate signed by it, named as a kubernetes.io/tls Secret mounts them (ca.crt, tls.*)."""
    directory.mkdir()

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={ca_name}",
            "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={SERVER_NAME}", "-keyout", "tls.key",
            "-out", "tls.csr")  # fmt: skip
    # Served and presented alike: each process's certificate is its server and its client certificate.
    (directory / "tls.ext").write_text(f"subjectAltName=DNS:{SERVER_NAME}\nextendedKeyUsage=serverAuth,clientAuth\n")
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
            "-extfile", "tls.ext", "-out", "tls.crt")  # fmt: skip
    return directory


class Store:
    """A readiness check the test switches off."""

    def __init__(self) -> None:
        self.up = True

    async def probe(self) -> None:
        if not self.up:
            raise ConnectionRefusedError("store down")


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[GrpcServer, Store, Path]]:
    tls = _issue(tmp_path / "tls", "loanbook-test-ca")
    store = Store()
    settings = GrpcServiceSettings(
        grpc_host="127.0.0.1",
        grpc_port=0,
        tls_cert_file=tls / "tls.crt",
        tls_key_file=tls / "tls.key",
        tls_ca_file=tls / "ca.crt",
    )
    server = GrpcServer(
        settings, [ServiceBinding("loanbook.test.v1.Probed", lambda _: None, [ReadinessCheck("store", store.probe)])]
    )
    port = await server.start()
    assert port
    try:
        yield server, store, tls
    finally:
        await server.stop(grace=0)


async def _probe(server: GrpcServer, service: str, tls_dir: Path) -> tuple[int, str]:
    """Runs the probe as the kubelet would (its own process); the exit code and what it printed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(PROBE), f"--port={server.port}", f"--service={service}", f"--server-name={SERVER_NAME}",
        f"--tls-dir={tls_dir}", "--timeout=5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_the_probe_passes_while_serving_and_readiness_fails_while_a_store_is_down(
    tls_server: tuple[GrpcServer, Store, Path],
) -> None:
    server, store, tls = tls_server
    assert await _probe(server, "liveness", tls) == (0, "liveness: SERVING\n")
    assert await _probe(server, "", tls) == (0, "(server): SERVING\n")

    store.up = False
    await server.check_readiness()  # publishes the store's failure at once, as the next round would
    assert await _probe(server, "", tls) == (1, "(server): NOT_SERVING\n")
    assert (await _probe(server, "liveness", tls))[0] == 0, "a store outage is no reason to restart the process"


async def test_the_probe_fails_against_a_server_it_cannot_authenticate_to(
    tls_server: tuple[GrpcServer, Store, Path], tmp_path: Path
) -> None:
    server, _, _ = tls_server
    other = _issue(tmp_path / "other", "another-ca")
    code, output = await _probe(server, "liveness", other)
    assert code == 1
    assert "health check failed: UNAVAILABLE" in output
