"""gRPC client channels to peer services, plain or TLS, created once per process."""

from __future__ import annotations

import grpc

from chassis.config import TlsSettings


def create_channel(target: str, tls: TlsSettings | None = None) -> grpc.aio.Channel:
    """A channel to `target`; with TLS settings it verifies the peer against the CA and presents our cert."""
    if tls is None or not tls.tls_enabled:
        return grpc.aio.insecure_channel(target)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.tls_ca_file.read_bytes() if tls.tls_ca_file else None,
        private_key=tls.tls_key_file.read_bytes() if tls.tls_key_file else None,
        certificate_chain=tls.tls_cert_file.read_bytes() if tls.tls_cert_file else None,
    )
    return grpc.aio.secure_channel(target, credentials)
