"""Exit 0 when this pod's gRPC server reports a health service SERVING over mutual TLS (the kubelet's cannot)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--service", default="", help='health service name: "" (readiness) or "liveness"')
    parser.add_argument("--server-name", required=True, help="a DNS name in the server's certificate")
    parser.add_argument("--tls-dir", type=Path, default=Path("/etc/loanbook/tls"), help="ca.crt, tls.crt, tls.key")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds")
    args = parser.parse_args(argv)
    # The pod's own certificate: the server demands a client certificate signed by the same CA.
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(args.tls_dir / "ca.crt").read_bytes(),
        private_key=(args.tls_dir / "tls.key").read_bytes(),
        certificate_chain=(args.tls_dir / "tls.crt").read_bytes(),
    )
    # Dialled on loopback, so the certificate's name is given rather than taken from the address.
    options = [("grpc.ssl_target_name_override", args.server_name)]
    with grpc.secure_channel(f"127.0.0.1:{args.port}", credentials, options) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as error:
            print(f"health check failed: {error.code().name}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(f"{args.service or '(server)'}: {status}")
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
