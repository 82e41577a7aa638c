"""gRPC client channels to peer services, plain or TLS, created once per process."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import grpc

from chassis.config import TlsSettings

Stub = TypeVar("Stub")

# gRPC's C core shares one TCP connection among every channel to the same target with the same options; this option
# gives a channel its own, so several channels are several connections.
OWN_CONNECTION: Any = (("grpc.use_local_subchannel_pool", 1),)


def create_channel(target: str, tls: TlsSettings | None = None, *, own_connection: bool = False) -> grpc.aio.Channel:
    """A channel to `target`; with TLS settings it verifies the peer against the CA and presents our cert.
    `own_connection`: a TCP connection of its own, not the one other channels to `target` share."""
    options = OWN_CONNECTION if own_connection else None
    if tls is None or not tls.tls_enabled:
        return grpc.aio.insecure_channel(target, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.tls_ca_file.read_bytes() if tls.tls_ca_file else None,
        private_key=tls.tls_key_file.read_bytes() if tls.tls_key_file else None,
        certificate_chain=tls.tls_cert_file.read_bytes() if tls.tls_cert_file else None,
    )
    return grpc.aio.secure_channel(target, credentials, options=options)


def create_channels(target: str, tls: TlsSettings | None, connections: int) -> list[grpc.aio.Channel]:
    """`connections` channels to `target`, each on its own TCP connection (one: the shared one, as create_channel)."""
    if connections == 1:
        return [create_channel(target, tls)]
    return [create_channel(target, tls, own_connection=True) for _ in range(connections)]


class Rotating(Generic[Stub]):
    """Stubs over several connections to one address, each call on the next: HTTP/2 puts every call of one
    connection on the server process (worker, replica behind a load balancer) that accepted it, so calls spread
    over a service's processes only as far as they spread over connections."""

    def __init__(self, stubs: Sequence[Stub]) -> None:
        self._next = itertools.cycle(stubs).__next__

    def __getattr__(self, method: str) -> Any:
        return getattr(self._next(), method)
