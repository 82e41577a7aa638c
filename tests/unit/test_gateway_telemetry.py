"""The gateway's own telemetry: probes are not traced, and no query string reaches a span or a metric."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation._semconv import _OpenTelemetrySemanticConventionStability
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from chassis.identity import Role
from gateway.app import create_app
from gateway.config import GatewaySettings
from gateway.tokens import mint_token
from tests.support.metrics import metric_reader, points, total

SECRET = "unit-secret-that-is-long-enough-for-hs256-tokens"
# Values that must never appear in telemetry: a page token and a trace id, as clients send them in query strings.
PAGE_TOKEN = "pagetokenSENTINEL42"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
# Unreachable: the routes answer 503 or 400 without a downstream, which is all these tests need.
NOWHERE = "127.0.0.1:9"

_exporter = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def span_exporter() -> InMemorySpanExporter:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(_exporter))
    return _exporter


@pytest.fixture(params=["", "http/dup"], ids=["default-semconv", "http-dup-semconv"])
def semconv(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The HTTP semantic conventions the instrumentation follows (read once per process; re-read for each test)."""
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", request.param)
    _OpenTelemetrySemanticConventionStability._initialized = False
    yield str(request.param)
    monkeypatch.undo()
    _OpenTelemetrySemanticConventionStability._initialized = False


@pytest.fixture
async def client(semconv: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = GatewaySettings(
        customer_addr=NOWHERE,
        payment_addr=NOWHERE,
        logging_addr=NOWHERE,
        environment="test",
        jwt_secret=SECRET,
        grpc_deadline_seconds=0.5,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


def _headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(SECRET, Role.ADMIN, 'sub-admin')}"}


def _server_spans(trace_id: str) -> list[ReadableSpan]:
    return [
        span
        for span in _exporter.get_finished_spans()
        if span.kind is SpanKind.SERVER and format(span.context.trace_id, "032x") == trace_id
    ]


async def test_probes_are_not_traced(client: httpx.AsyncClient) -> None:
    _exporter.clear()

    for path in ("/livez", "/healthz"):
        assert (await client.get(path)).status_code == 200
    await client.get("/readyz")  # 503 here (no downstream answers); traced or not is what counts

    assert [span.name for span in _exporter.get_finished_spans()] == []


async def test_the_server_span_keeps_the_route_but_not_the_query_string(
    client: httpx.AsyncClient, semconv: str
) -> None:
    response = await client.get(
        f"/v1/applications?pageToken={PAGE_TOKEN}&traceId={TRACE_ID}&status=BOGUS", headers=_headers()
    )

    # The route still read its query: the bad status is refused by name.
    assert response.status_code == 400, response.text
    assert [detail["field"] for detail in response.json()["error"]["details"]] == ["status"]
    (span,) = _server_spans(response.headers["X-Trace-Id"])
    attributes = dict(span.attributes or {})
    assert attributes["http.route"] == "/v1/applications"
    url_attributes = {
        key: attributes[key] for key in ("http.url", "http.target", "url.path", "url.query") if key in attributes
    }
    assert url_attributes, "the span carries the request's URL in some form"
    every_value = " ".join(str(value) for value in attributes.values())
    assert PAGE_TOKEN not in every_value
    assert TRACE_ID not in every_value
    assert "?" not in every_value
    if semconv == "http/dup":
        assert attributes["url.path"] == "/v1/applications"
        assert "url.query" not in attributes


# The stable HTTP metric is emitted with the stable conventions opted in, as chassis.telemetry does by default.
@pytest.mark.parametrize("semconv", ["http"], indirect=True)
async def test_http_server_request_duration_is_recorded_by_route_without_query_strings(
    client: httpx.AsyncClient,
) -> None:
    metric_reader()
    wanted = {"http__route": "/v1/applications", "http__request__method": "GET", "http__response__status_code": 400}
    before = total("http.server.request.duration", **wanted)

    await client.get(f"/v1/applications?pageToken={PAGE_TOKEN}&status=BOGUS", headers=_headers())

    assert total("http.server.request.duration", **wanted) == before + 1
    for point in points("http.server.request.duration"):
        assert PAGE_TOKEN not in str(dict(point.attributes or {}))
