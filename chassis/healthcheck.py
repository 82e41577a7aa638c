"""`loanbook-healthcheck`: one probe of a loanbook process (gRPC health or an HTTP URL) for container healthchecks."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

TARGET_VARIABLE = "LOANBOOK_HEALTHCHECK_TARGET"
# The gRPC health name that stays SERVING while the process runs (readiness, "", follows the stores).
LIVENESS = "liveness"
DEFAULT_TIMEOUT_SECONDS = 2.0


class BadTarget(ValueError):
    """The target is not a grpc:// or http(s):// URL this probe understands."""


@dataclass(frozen=True)
class GrpcTarget:
    address: str
    service: str


@dataclass(frozen=True)
class HttpTarget:
    url: str


def parse_target(target: str) -> GrpcTarget | HttpTarget:
    """`grpc://HOST:PORT` (health name `liveness`), `grpc://HOST:PORT/` (`""`, readiness), `grpc://HOST:PORT/NAME`,
    or an `http://` / `https://` URL that must answer 200."""
    parts = urlsplit(target.strip())
    if parts.scheme in ("http", "https") and parts.netloc:
        return HttpTarget(target.strip())
    if parts.scheme == "grpc" and parts.hostname and parts.port:
        service = LIVENESS if parts.path == "" else parts.path.removeprefix("/")
        return GrpcTarget(parts.netloc, service)
    raise BadTarget(f"{target!r}: expected grpc://HOST:PORT[/SERVICE] or an http(s):// URL")


def probe_grpc(target: GrpcTarget, timeout: float) -> str | None:
    """None when the health service reports the name SERVING, else what it said instead."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target.address) as channel:
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


def check(target: GrpcTarget | HttpTarget, timeout: float) -> str | None:
    if isinstance(target, GrpcTarget):
        return probe_grpc(target, timeout)
    return probe_http(target, timeout)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(
        prog="loanbook-healthcheck", description="Exit 0 when a loanbook process answers healthy, 1 otherwise."
    )
    parser.add_argument(
        "target",
        nargs="?",
        default=env.get(TARGET_VARIABLE),
        help=f"grpc://HOST:PORT[/SERVICE] or an http(s):// URL (default: ${TARGET_VARIABLE})",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="seconds (default 2)")
    args = parser.parse_args(argv)
    if not args.target:
        print(f"loanbook-healthcheck: set {TARGET_VARIABLE} or give a target", file=sys.stderr)
        return 1
    try:
        target = parse_target(args.target)
    except BadTarget as error:
        print(f"loanbook-healthcheck: {TARGET_VARIABLE} {error}", file=sys.stderr)
        return 1
    problem = check(target, args.timeout)
    if problem is not None:
        print(f"loanbook-healthcheck: unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
