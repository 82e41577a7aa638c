"""`loanbook-healthcheck`: one probe of a loanbook process (gRPC health, plain or TLS, or an HTTP URL)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import grpc

TARGET_VARIABLE = "LOANBOOK_HEALTHCHECK_TARGET"
# Each TLS option's default comes from this variable, as the target's does, for a HEALTHCHECK with no arguments.
TLS_VARIABLES = {
    "tls_ca_file": "LOANBOOK_HEALTHCHECK_TLS_CA_FILE",
    "tls_cert_file": "LOANBOOK_HEALTHCHECK_TLS_CERT_FILE",
    "tls_key_file": "LOANBOOK_HEALTHCHECK_TLS_KEY_FILE",
    "tls_server_name": "LOANBOOK_HEALTHCHECK_TLS_SERVER_NAME",
}
# The gRPC health name that stays SERVING while the process runs (readiness, "", follows the stores).
LIVENESS = "liveness"
DEFAULT_TIMEOUT_SECONDS = 2.0


class BadTarget(ValueError):
    """The target is not a grpc://, grpcs:// or http(s):// URL this probe understands."""


class BadTls(ValueError):
    """TLS options that cannot work: for a plaintext target, a certificate without its key, a file not readable."""


@dataclass(frozen=True)
class GrpcTarget:
    address: str
    service: str
    tls: bool = False


@dataclass(frozen=True)
class HttpTarget:
    url: str


@dataclass(frozen=True)
class TlsOptions:
    """How to dial a grpcs:// target: the CA to trust (else the system's), our certificate for mutual TLS, and the
    name to expect in the server's certificate when the address is not it (a pod probing itself on loopback)."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None

    @property
    def given(self) -> bool:
        return any(value is not None for value in (self.ca_file, self.cert_file, self.key_file, self.server_name))


@dataclass(frozen=True)
class TlsMaterial:
    """The bytes of the files TlsOptions names, read before dialling so a missing file is reported as such."""

    root_certificates: bytes | None
    private_key: bytes | None
    certificate_chain: bytes | None
    server_name: str | None


def parse_target(target: str) -> GrpcTarget | HttpTarget:
    """`grpc://HOST:PORT` (health name `liveness`), `grpc://HOST:PORT/` (`""`, readiness), `grpc://HOST:PORT/NAME`;
    `grpcs://` alike over TLS; or an `http://` / `https://` URL that must answer 200."""
    parts = urlsplit(target.strip())
    if parts.scheme in ("http", "https") and parts.netloc:
        return HttpTarget(target.strip())
    if parts.scheme in ("grpc", "grpcs") and parts.hostname and parts.port:
        service = LIVENESS if parts.path == "" else parts.path.removeprefix("/")
        return GrpcTarget(parts.netloc, service, tls=parts.scheme == "grpcs")
    raise BadTarget(
        f"{target!r}: expected grpc://HOST:PORT[/SERVICE], grpcs://HOST:PORT[/SERVICE] or an http(s):// URL"
    )


def _read(dest: str, path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as error:
        source = f"--{dest.replace('_', '-')} or ${TLS_VARIABLES[dest]}"
        raise BadTls(f"{path} ({source}): {error.strerror or error}") from error


def load_tls(target: GrpcTarget | HttpTarget, options: TlsOptions) -> TlsMaterial | None:
    """The TLS material to dial `target` with; None for a plaintext target. Raises BadTls for options that cannot
    work, rather than letting them pass unused or fail later as an opaque handshake error."""
    if not isinstance(target, GrpcTarget) or not target.tls:
        if options.given:
            raise BadTls("TLS options (--tls-*, $LOANBOOK_HEALTHCHECK_TLS_*) apply to grpcs:// targets only")
        return None
    if (options.cert_file is None) != (options.key_file is None):
        raise BadTls("--tls-cert-file and --tls-key-file go together (mutual TLS needs both)")
    return TlsMaterial(
        root_certificates=_read("tls_ca_file", options.ca_file),
        private_key=_read("tls_key_file", options.key_file),
        certificate_chain=_read("tls_cert_file", options.cert_file),
        server_name=options.server_name,
    )


def _channel(target: GrpcTarget, tls: TlsMaterial | None) -> grpc.Channel:
    import grpc

    if tls is None:
        return grpc.insecure_channel(target.address)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.root_certificates, private_key=tls.private_key, certificate_chain=tls.certificate_chain
    )
    # The certificate names the Service, not the loopback address a pod probes itself on.
    options = [("grpc.ssl_target_name_override", tls.server_name)] if tls.server_name else []
    return grpc.secure_channel(target.address, credentials, options)


def probe_grpc(target: GrpcTarget, timeout: float, tls: TlsMaterial | None = None) -> str | None:
    """None when the health service reports the name SERVING, else what it said instead."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with _channel(target, tls) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=target.service), timeout=timeout
            )
        except grpc.RpcError as error:
            details = error.details()
            return f"{error.code().name}: {details}" if details else str(error.code().name)
    if response.status == health_pb2.HealthCheckResponse.SERVING:
        return None
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def probe_http(target: HttpTarget, timeout: float) -> str | None:
    """None when a GET answers 200, else the status or the transport error."""
    import httpx

    try:
        response = httpx.get(target.url, timeout=timeout)
    except httpx.HTTPError as error:
        return f"{type(error).__name__}: {error}"
    return None if response.status_code == 200 else f"HTTP {response.status_code}"


def check(target: GrpcTarget | HttpTarget, timeout: float, tls: TlsMaterial | None = None) -> str | None:
    if isinstance(target, GrpcTarget):
        return probe_grpc(target, timeout, tls)
    return probe_http(target, timeout)


def build_parser(env: Mapping[str, str] = os.environ) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loanbook-healthcheck", description="Exit 0 when a loanbook process answers healthy, 1 otherwise."
    )
    parser.add_argument(
        "target",
        nargs="?",
        default=env.get(TARGET_VARIABLE),
        help=f"grpc(s)://HOST:PORT[/SERVICE] or an http(s):// URL (default: ${TARGET_VARIABLE})",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="seconds (default 2)")
    tls = parser.add_argument_group("TLS (grpcs:// only)")
    for dest, help_text in (
        ("tls_ca_file", "PEM CA certificate(s) to trust (default: the system's)"),
        ("tls_cert_file", "PEM client certificate, for mutual TLS (with --tls-key-file)"),
        ("tls_key_file", "PEM private key of --tls-cert-file"),
    ):
        variable = TLS_VARIABLES[dest]
        default = Path(env[variable]) if env.get(variable) else None
        tls.add_argument(f"--{dest.replace('_', '-')}", type=Path, default=default, help=f"{help_text}; ${variable}")
    variable = TLS_VARIABLES["tls_server_name"]
    tls.add_argument(
        "--tls-server-name",
        default=env.get(variable) or None,
        help=f"the name the server's certificate must carry when the address is not it; ${variable}",
    )
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] = os.environ) -> int:
    args = build_parser(env).parse_args(argv)
    if not args.target:
        print(f"loanbook-healthcheck: set {TARGET_VARIABLE} or give a target", file=sys.stderr)
        return 1
    try:
        target = parse_target(args.target)
    except BadTarget as error:
        print(f"loanbook-healthcheck: {TARGET_VARIABLE} {error}", file=sys.stderr)
        return 1
    options = TlsOptions(args.tls_ca_file, args.tls_cert_file, args.tls_key_file, args.tls_server_name)
    try:
        tls = load_tls(target, options)
    except BadTls as error:
        print(f"loanbook-healthcheck: {error}", file=sys.stderr)
        return 1
    problem = check(target, args.timeout, tls)
    if problem is not None:
        print(f"loanbook-healthcheck: unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
