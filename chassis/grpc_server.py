"""A grpc.aio server with health checking, reflection, optional TLS and graceful shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from chassis.config import GrpcServiceSettings, TlsSettings
from chassis.grpc_errors import ErrorMappingServer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceBinding:
    """One gRPC service to serve: its full name (for health and reflection) and how to add it."""

    full_name: str
    add_to_server: Callable[[grpc.aio.Server], None]


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials | None:
    """TLS credentials when a certificate is configured; mTLS when a client CA is configured too."""
    if tls.tls_cert_file is None or tls.tls_key_file is None:
        return None
    client_ca = tls.tls_ca_file.read_bytes() if tls.tls_ca_file else None
    return grpc.ssl_server_credentials(
        [(tls.tls_key_file.read_bytes(), tls.tls_cert_file.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


class GrpcServer:
    """Owns one grpc.aio server; `start()` binds and reports SERVING, `stop()` drains in-flight RPCs."""

    def __init__(
        self,
        settings: GrpcServiceSettings,
        services: Sequence[ServiceBinding],
        *,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    ) -> None:
        self._settings = settings
        self._services = services
        # Domain errors become status codes in every method registered, of every service.
        self._server = ErrorMappingServer(grpc.aio.server(interceptors=interceptors))
        self._health = health.aio.HealthServicer()
        self.port: int | None = None

    @property
    def address(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"{self._settings.grpc_host}:{self.port}"

    async def start(self) -> int:
        for service in self._services:
            service.add_to_server(self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        names = [service.full_name for service in self._services]
        reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], self._server)

        address = f"{self._settings.grpc_host}:{self._settings.grpc_port}"
        credentials = server_credentials(self._settings)
        if credentials is None:
            self.port = self._server.add_insecure_port(address)
        else:
            self.port = self._server.add_secure_port(address, credentials)
        await self._server.start()
        for name in ["", *names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        logger.info(
            "gRPC server serving",
            extra={"address": self.address, "services": names, "tls": credentials is not None},
        )
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, refuse new RPCs, and give in-flight ones `grace` seconds to finish."""
        grace = self._settings.shutdown_grace_seconds if grace is None else grace
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)
        logger.info("gRPC server stopped", extra={"grace_seconds": grace})

    async def serve_until_signalled(self) -> None:
        """Start, then run until SIGTERM or SIGINT, then shut down gracefully."""
        stop_requested = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop_requested.set)
        try:
            await self.start()
            await stop_requested.wait()
            logger.info("shutdown requested")
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            await self.stop()
