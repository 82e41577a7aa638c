"""A grpc.aio server with truthful health checking, reflection, RPC metrics, optional TLS and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.utils import suppress_instrumentation

from chassis.config import GrpcServiceSettings, TlsSettings
from chassis.grpc_errors import ErrorMappingServer

logger = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# The health name that answers SERVING for as long as the process runs, whatever its stores say: the liveness
# probe's. Readiness is "" (the whole process) and each service's full name.
LIVENESS = "liveness"


@dataclass(frozen=True)
class ReadinessCheck:
    """One thing a service needs to do its job (a store), probed periodically: `probe` raises when it cannot."""

    name: str
    probe: Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class ServiceBinding:
    """One gRPC service to serve: its full name (for health and reflection), how to add it, and what it needs.

    `readiness`: the checks that must pass for the service to do its job; gRPC health reports the service (and
    "") NOT_SERVING while any of them fails, and SERVING again once they all pass.
    """

    full_name: str
    add_to_server: Callable[[grpc.aio.Server], None]
    readiness: Sequence[ReadinessCheck] = ()


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
        # Several workers bind the one port together (chassis.workers): grpc turns SO_REUSEPORT on where the
        # platform has it, but they depend on it, so it is spelled out.
        options = [("grpc.so_reuseport", 1)] if settings.workers > 1 else []
        # Domain errors become status codes in every method registered, of every service.
        self._server = ErrorMappingServer(grpc.aio.server(interceptors=interceptors, options=options))
        self._health = health.aio.HealthServicer()
        self._checks = {check.name: check for service in services for check in service.readiness}
        # The checks each health name depends on: "" on all of them.
        self._needs = {service.full_name: {check.name for check in service.readiness} for service in services}
        self._needs[""] = set(self._checks)
        self._failing: set[str] = set()
        self._published: dict[str, int] = {}
        self._readiness_task: asyncio.Task[None] | None = None
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
        await self._health.set(LIVENESS, SERVING)
        await self.check_readiness()  # the first status any caller sees is already the truth
        await self._server.start()
        self._readiness_task = asyncio.create_task(self._keep_checking_readiness(), name="grpc-readiness")
        logger.info(
            "gRPC server serving",
            extra={
                "address": self.address,
                "services": names,
                "tls": credentials is not None,
                "not_ready": sorted(self._failing),
            },
        )
        return self.port

    async def check_readiness(self) -> None:
        """Probes every readiness check once and publishes each health name's status where it changed."""
        results = await asyncio.gather(*(self._probe(check) for check in self._checks.values()))
        failing = {name for name, problem in results if problem is not None}
        for name, problem in results:
            if problem is not None and name not in self._failing:
                logger.warning("readiness check failed", extra={"check": name, "error_type": problem})
            elif problem is None and name in self._failing:
                logger.info("readiness check passes again", extra={"check": name})
        self._failing = failing
        for name, needs in self._needs.items():
            status = NOT_SERVING if needs & failing else SERVING
            if self._published.get(name) != status:
                await self._health.set(name, status)
                self._published[name] = status

    async def _probe(self, check: ReadinessCheck) -> tuple[str, str | None]:
        """The check's name and None when it passes, else why not (an error type, or "timeout")."""
        try:
            # A probe every few seconds is no request: its store calls are not traced.
            with suppress_instrumentation():
                async with asyncio.timeout(self._settings.health_check_timeout_seconds):
                    await check.probe()
        except TimeoutError:
            return check.name, "timeout"
        except Exception as error:  # whatever the store raised, the service cannot use it now
            return check.name, type(error).__name__
        return check.name, None

    async def _keep_checking_readiness(self) -> None:
        while True:
            await asyncio.sleep(self._settings.health_check_interval_seconds)
            try:
                await self.check_readiness()
            except Exception:  # a bug here must not freeze the health at its last status
                logger.exception("readiness round failed")

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, refuse new RPCs, and give in-flight ones `grace` seconds to finish."""
        grace = self._settings.shutdown_grace_seconds if grace is None else grace
        if self._readiness_task is not None:
            self._readiness_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._readiness_task
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)
        logger.info("gRPC server stopped", extra={"grace_seconds": grace})

    async def serve_until_signalled(self, on_serving: Callable[[], None] | None = None) -> None:
        """Start, then run until SIGTERM or SIGINT, then shut down gracefully; `on_serving` once it serves."""
        stop_requested = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop_requested.set)
        try:
            await self.start()
            if on_serving is not None:
                on_serving()
            await stop_requested.wait()
            logger.info("shutdown requested")
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            await self.stop()
