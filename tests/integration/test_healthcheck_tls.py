"""`loanbook-healthcheck` asks a mutual-TLS gRPC server for its health as a pod probes itself (the kubelet cannot)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chassis.config import GrpcServiceSettings
from chassis.grpc_server import GrpcServer, ReadinessCheck, ServiceBinding

# The console script the image installs, as the production overlay's exec probes run it.
HEALTHCHECK = Path(sys.executable).parent / "loanbook-healthcheck"
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
    # The server demands a client certificate signed by its CA, as in production.
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


def _tls_arguments(
    tls_dir: Path, *, client_certificate: bool = True, server_name: str | None = SERVER_NAME
) -> list[str]:
    """The options the production probes pass: the pod's own mounted Secret, and the Service name it is issued for."""
    arguments = [f"--tls-ca-file={tls_dir / 'ca.crt'}"]
    if client_certificate:
        arguments += [f"--tls-cert-file={tls_dir / 'tls.crt'}", f"--tls-key-file={tls_dir / 'tls.key'}"]
    if server_name is not None:
        arguments.append(f"--tls-server-name={server_name}")
    return arguments


async def _healthcheck(*arguments: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Runs loanbook-healthcheck as the kubelet would (its own process); the exit code and what it printed."""
    process = await asyncio.create_subprocess_exec(
        str(HEALTHCHECK), *arguments, "--timeout=5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={"PATH": os.environ.get("PATH", ""), **(env or {})},
    )  # fmt: skip
    output, _ = await process.communicate()
    assert process.returncode is not None
    # gRPC core may log a failed handshake to stderr first; the verdict is the last line.
    lines = output.decode().splitlines()
    return process.returncode, lines[-1] if lines else ""


async def test_it_passes_while_serving_and_readiness_fails_while_a_store_is_down(
    tls_server: tuple[GrpcServer, Store, Path],
) -> None:
    server, store, tls = tls_server
    address = f"grpcs://127.0.0.1:{server.port}"
    assert await _healthcheck(f"{address}/liveness", *_tls_arguments(tls)) == (0, "")
    assert await _healthcheck(f"{address}/", *_tls_arguments(tls)) == (0, "")

    store.up = False
    await server.check_readiness()  # publishes the store's failure at once, as the next round would
    assert await _healthcheck(f"{address}/", *_tls_arguments(tls)) == (
        1,
        "loanbook-healthcheck: unhealthy: NOT_SERVING",
    )
    assert await _healthcheck(f"{address}/liveness", *_tls_arguments(tls)) == (0, ""), (
        "a store outage is no reason to restart the process"
    )


async def test_the_tls_options_can_come_from_the_environment(tls_server: tuple[GrpcServer, Store, Path]) -> None:
    server, _, tls = tls_server
    env = {
        "LOANBOOK_HEALTHCHECK_TARGET": f"grpcs://127.0.0.1:{server.port}/liveness",
        "LOANBOOK_HEALTHCHECK_TLS_CA_FILE": str(tls / "ca.crt"),
        "LOANBOOK_HEALTHCHECK_TLS_CERT_FILE": str(tls / "tls.crt"),
        "LOANBOOK_HEALTHCHECK_TLS_KEY_FILE": str(tls / "tls.key"),
        "LOANBOOK_HEALTHCHECK_TLS_SERVER_NAME": SERVER_NAME,
    }
    assert await _healthcheck(env=env) == (0, "")
    # Without the server name, the loopback address is what the certificate would have to carry.
    del env["LOANBOOK_HEALTHCHECK_TLS_SERVER_NAME"]
    code, output = await _healthcheck(env=env)
    assert code == 1
    assert output.startswith("loanbook-healthcheck: unhealthy: UNAVAILABLE"), output
    assert "Hostname Verification" in output, output


async def test_it_fails_against_a_server_signed_by_a_ca_it_does_not_trust(
    tls_server: tuple[GrpcServer, Store, Path], tmp_path: Path
) -> None:
    server, _, _ = tls_server
    other = _issue(tmp_path / "other", "another-ca")
    code, output = await _healthcheck(f"grpcs://127.0.0.1:{server.port}/liveness", *_tls_arguments(other))
    assert code == 1
    assert output.startswith("loanbook-healthcheck: unhealthy: UNAVAILABLE"), output
    assert "CERTIFICATE_VERIFY_FAILED" in output, output


async def test_the_server_refuses_a_probe_without_a_client_certificate_it_trusts(
    tls_server: tuple[GrpcServer, Store, Path], tmp_path: Path
) -> None:
    server, _, tls = tls_server
    address = f"grpcs://127.0.0.1:{server.port}/liveness"
    code, output = await _healthcheck(address, *_tls_arguments(tls, client_certificate=False))
    assert code == 1, "the server demands a client certificate"
    assert output.startswith("loanbook-healthcheck: unhealthy: UNAVAILABLE"), output

    # The server's CA trusted, but a client certificate from another CA.
    other = _issue(tmp_path / "other", "another-ca")
    code, output = await _healthcheck(
        address,
        f"--tls-ca-file={tls / 'ca.crt'}",
        f"--tls-cert-file={other / 'tls.crt'}",
        f"--tls-key-file={other / 'tls.key'}",
        f"--tls-server-name={SERVER_NAME}",
    )
    assert code == 1, "the server checks the client certificate against its CA"
    assert output.startswith("loanbook-healthcheck: unhealthy: UNAVAILABLE"), output


async def test_plaintext_is_refused_by_a_tls_server(tls_server: tuple[GrpcServer, Store, Path]) -> None:
    server, _, _ = tls_server
    code, output = await _healthcheck(f"grpc://127.0.0.1:{server.port}/liveness")
    assert code == 1
    assert output.startswith("loanbook-healthcheck: unhealthy: UNAVAILABLE"), output
