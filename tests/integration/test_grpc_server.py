"""The shared gRPC server: health, readiness, reflection, RPC metrics, TLS/mTLS and graceful shutdown, on a real
port."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.sdk.metrics.export import HistogramDataPoint
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from chassis.config import GrpcServiceSettings, TlsSettings
from chassis.errors import NotFound
from chassis.grpc_client import create_channel
from chassis.grpc_server import LIVENESS, NOT_SERVING, SERVING, GrpcServer, ReadinessCheck, ServiceBinding
from chassis.rpc_telemetry import traced_call
from tests.support.grpc import health_becomes
from tests.support.metrics import metric_reader, points, total

SLOW_SERVICE = "loanbook.test.v1.SlowService"


def _slow_service(started: asyncio.Event, readiness: list[ReadinessCheck] | None = None) -> ServiceBinding:
    """A service whose one method sleeps, to hold an RPC in flight while the server stops, and one that fails."""

    async def sleep(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        started.set()
        await asyncio.sleep(float(request.decode()))
        return b"done"

    async def find(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        raise NotFound("thing", request.decode())

    handler = grpc.method_handlers_generic_handler(
        SLOW_SERVICE,
        {"Sleep": grpc.unary_unary_rpc_method_handler(sleep), "Find": grpc.unary_unary_rpc_method_handler(find)},
    )
    return ServiceBinding(SLOW_SERVICE, lambda server: server.add_generic_rpc_handlers((handler,)), readiness or [])


def _sleep_call(channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(f"/{SLOW_SERVICE}/Sleep")


async def _sleep(channel: grpc.aio.Channel, seconds: str, timeout: float) -> bytes:
    return await _sleep_call(channel)(seconds.encode(), timeout=timeout)


@pytest.fixture
async def running_server() -> AsyncIterator[tuple[GrpcServer, asyncio.Event]]:
    started = asyncio.Event()
    server = GrpcServer(GrpcServiceSettings(grpc_port=0), [_slow_service(started)])
    await server.start()
    try:
        yield server, started
    finally:
        await server.stop(grace=0)


async def test_reports_serving_for_the_server_and_each_service(
    running_server: tuple[GrpcServer, asyncio.Event],
) -> None:
    server, _ = running_server
    async with grpc.aio.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", SLOW_SERVICE):
            response = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=2)
            assert response.status == health_pb2.HealthCheckResponse.SERVING


class FlakyStore:
    """A readiness check a test turns off and on (`up`), or makes hang; it counts the probes it answered."""

    def __init__(self) -> None:
        self.up = True
        self.hangs = False
        self.probes = 0
        self._probed = asyncio.Condition()

    async def probe(self) -> None:
        async with self._probed:
            self.probes += 1
            self._probed.notify_all()
        if self.hangs:
            await asyncio.Event().wait()
        if not self.up:
            raise ConnectionRefusedError("store down")

    async def probed_again(self, times: int) -> None:
        """Returns once `times` more probes have started."""
        wanted = self.probes + times
        async with asyncio.timeout(10), self._probed:
            await self._probed.wait_for(lambda: self.probes >= wanted)


OTHER_SERVICE = "loanbook.test.v1.OtherService"


@pytest.fixture
async def watched_server() -> AsyncIterator[tuple[GrpcServer, FlakyStore]]:
    store = FlakyStore()
    settings = GrpcServiceSettings(grpc_port=0, health_check_interval_seconds=0.05, health_check_timeout_seconds=0.2)
    # A second service that needs nothing: its own health name stays SERVING whatever the store does.
    other = ServiceBinding(OTHER_SERVICE, lambda server: None)
    server = GrpcServer(settings, [_slow_service(asyncio.Event(), [ReadinessCheck("store", store.probe)]), other])
    await server.start()
    try:
        yield server, store
    finally:
        await server.stop(grace=0)


async def _status(address: str, service: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=2
        )
        status: int = response.status
        return status


async def test_health_reports_not_serving_while_a_readiness_check_fails_and_serving_once_it_passes(
    watched_server: tuple[GrpcServer, FlakyStore], caplog: pytest.LogCaptureFixture
) -> None:
    server, store = watched_server
    caplog.set_level(logging.INFO, logger="chassis.grpc_server")
    await health_becomes(server.address, "", SERVING)

    store.up = False
    await health_becomes(server.address, "", NOT_SERVING)
    assert await _status(server.address, SLOW_SERVICE) == NOT_SERVING
    assert await _status(server.address, OTHER_SERVICE) == SERVING
    assert await _status(server.address, LIVENESS) == SERVING  # the process is up: liveness is not readiness
    await store.probed_again(3)

    store.up = True
    await health_becomes(server.address, "", SERVING)
    assert await _status(server.address, SLOW_SERVICE) == SERVING
    await store.probed_again(3)

    messages = [(record.getMessage(), getattr(record, "check", None)) for record in caplog.records]
    # Each transition once, not once per probe.
    assert messages.count(("readiness check failed", "store")) == 1
    assert messages.count(("readiness check passes again", "store")) == 1
    failed = next(record for record in caplog.records if record.getMessage() == "readiness check failed")
    assert getattr(failed, "error_type", None) == "ConnectionRefusedError"


async def test_a_readiness_check_that_does_not_answer_in_time_fails(
    watched_server: tuple[GrpcServer, FlakyStore],
) -> None:
    server, store = watched_server
    store.hangs = True

    await health_becomes(server.address, SLOW_SERVICE, NOT_SERVING)

    store.hangs = False
    await health_becomes(server.address, SLOW_SERVICE, SERVING)


async def test_rpc_server_duration_is_recorded_per_method_and_status_but_not_for_health(
    running_server: tuple[GrpcServer, asyncio.Event],
) -> None:
    metric_reader()
    server, _ = running_server
    attributes = {"rpc__system": "grpc", "rpc__service": SLOW_SERVICE}
    ok_before = _count(rpc__method="Sleep", rpc__grpc__status_code=0, **attributes)
    not_found_before = _count(
        rpc__method="Find", rpc__grpc__status_code=grpc.StatusCode.NOT_FOUND.value[0], **attributes
    )
    health_before = _count(rpc__service="grpc.health.v1.Health")

    async with grpc.aio.insecure_channel(server.address) as channel:
        assert await _sleep(channel, "0.05", timeout=5) == b"done"
        with pytest.raises(grpc.aio.AioRpcError):
            await _find_call(channel)(b"x", timeout=5)
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)

    assert _count(rpc__method="Sleep", rpc__grpc__status_code=0, **attributes) == ok_before + 1
    assert (
        _count(rpc__method="Find", rpc__grpc__status_code=grpc.StatusCode.NOT_FOUND.value[0], **attributes)
        == not_found_before + 1
    )
    assert _count(rpc__service="grpc.health.v1.Health") == health_before == 0
    slept = points("rpc.server.duration", rpc__method="Sleep", **attributes)
    assert max(p.max for p in slept if isinstance(p, HistogramDataPoint)) >= 50  # milliseconds: the call slept 0.05 s


def _count(**attributes: object) -> float:
    return total("rpc.server.duration", **attributes)


def _find_call(channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(f"/{SLOW_SERVICE}/Find")


async def test_reflection_lists_the_registered_services(running_server: tuple[GrpcServer, asyncio.Event]) -> None:
    server, _ = running_server
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        async for response in responses:
            names = {service.name for service in response.list_services_response.service}
            break

    assert {SLOW_SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


async def test_stop_lets_in_flight_rpcs_finish_and_refuses_new_ones(
    running_server: tuple[GrpcServer, asyncio.Event],
) -> None:
    server, started = running_server
    async with grpc.aio.insecure_channel(server.address) as channel:
        in_flight = asyncio.create_task(_sleep(channel, "0.5", timeout=5))
        await asyncio.wait_for(started.wait(), 2)

        await server.stop(grace=5)

        assert await in_flight == b"done"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _sleep_call(channel)(b"0", timeout=1)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_stop_cancels_rpcs_that_outlive_the_grace_period(
    running_server: tuple[GrpcServer, asyncio.Event],
) -> None:
    server, started = running_server
    async with grpc.aio.insecure_channel(server.address) as channel:
        in_flight = asyncio.create_task(_sleep(channel, "30", timeout=10))
        await asyncio.wait_for(started.wait(), 2)

        await server.stop(grace=0.2)

        with pytest.raises(grpc.aio.AioRpcError) as cancelled:
            await in_flight
        assert cancelled.value.code() in {grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE}


def _make_certificates(directory: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    for name, extension in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
        )
        (directory / f"{name}.ext").write_text(extension + "\n")
        run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            f"{name}.ext",
            "-out",
            f"{name}.pem",
        )
    return {path.stem + path.suffix.replace(".", "_"): path for path in directory.iterdir()}


async def test_mutual_tls_serves_clients_with_a_certificate_and_refuses_others(tmp_path: Path) -> None:
    files = _make_certificates(tmp_path)
    started = asyncio.Event()
    server_settings = GrpcServiceSettings(
        grpc_port=0, tls_cert_file=files["server_pem"], tls_key_file=files["server_key"], tls_ca_file=files["ca_pem"]
    )
    server = GrpcServer(server_settings, [_slow_service(started)])
    await server.start()
    try:
        client_tls = TlsSettings(
            tls_cert_file=files["client_pem"], tls_key_file=files["client_key"], tls_ca_file=files["ca_pem"]
        )
        async with create_channel(server.address, client_tls) as channel:
            assert await _sleep_call(channel)(b"0", timeout=5) == b"done"

        anonymous = TlsSettings(tls_ca_file=files["ca_pem"])
        async with create_channel(server.address, anonymous) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _sleep_call(channel)(b"0", timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

        async with grpc.aio.insecure_channel(server.address) as plaintext:
            with pytest.raises(grpc.aio.AioRpcError):
                await _sleep_call(plaintext)(b"0", timeout=2)
    finally:
        await server.stop(grace=0)


async def test_calls_are_traced_client_to_server_and_probes_are_not(
    running_server: tuple[GrpcServer, asyncio.Event], spans: InMemorySpanExporter
) -> None:
    server, _ = running_server
    spans.clear()
    async with grpc.aio.insecure_channel(server.address) as channel:
        assert await traced_call(_sleep_call(channel), b"0", timeout=5) == b"done"
        with pytest.raises(grpc.aio.AioRpcError):
            await traced_call(_find_call(channel), b"x", timeout=5)
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)

    by_kind = {(s.kind, s.name): s for s in spans.get_finished_spans()}
    sleep_client = by_kind[(SpanKind.CLIENT, f"/{SLOW_SERVICE}/Sleep")]
    sleep_server = by_kind[(SpanKind.SERVER, f"/{SLOW_SERVICE}/Sleep")]
    assert sleep_server.parent is not None
    assert sleep_server.parent.span_id == sleep_client.context.span_id  # the context crossed in the metadata
    assert sleep_server.context.trace_id == sleep_client.context.trace_id
    assert sleep_server.attributes == {
        "rpc.system": "grpc",
        "rpc.service": SLOW_SERVICE,
        "rpc.method": "Sleep",
        "rpc.grpc.status_code": 0,
    }
    # NOT_FOUND is the caller's error: the server span stays unset, the client's says which code, never the details.
    find_server = by_kind[(SpanKind.SERVER, f"/{SLOW_SERVICE}/Find")]
    find_client = by_kind[(SpanKind.CLIENT, f"/{SLOW_SERVICE}/Find")]
    assert find_server.status.status_code is StatusCode.UNSET
    assert find_server.attributes is not None
    assert find_server.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert (find_client.status.status_code, find_client.status.description) == (StatusCode.ERROR, "NOT_FOUND")
    assert not find_client.events
    assert not [s for s in spans.get_finished_spans() if "Health" in s.name]


async def test_a_service_failure_marks_the_server_span_as_an_error(spans: InMemorySpanExporter) -> None:
    async def broken(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        raise RuntimeError("a bug with a customer's e-mail in its message: casey@example.test")

    handler = grpc.method_handlers_generic_handler(
        SLOW_SERVICE, {"Broken": grpc.unary_unary_rpc_method_handler(broken)}
    )
    binding = ServiceBinding(SLOW_SERVICE, lambda s: s.add_generic_rpc_handlers((handler,)), [])
    server = GrpcServer(GrpcServiceSettings(grpc_port=0), [binding])
    await server.start()
    spans.clear()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await traced_call(channel.unary_unary(f"/{SLOW_SERVICE}/Broken"), b"", timeout=5)
    finally:
        await server.stop(grace=0)

    [served] = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert (served.status.status_code, served.status.description) == (StatusCode.ERROR, "INTERNAL")
    assert "casey@example.test" not in str(served.to_json())
