"""Trace and metric exporters are chosen by the standard OTEL_* variables; a value we cannot honour is named."""

import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from chassis.config import ConfigurationError
from chassis.telemetry import (
    DEPLOYMENT_ENVIRONMENT,
    PROMETHEUS_DEFAULT_PORT,
    MetricsEndpoint,
    metric_exporters_from_environment,
    prometheus_endpoint,
    resource_for,
    span_exporters_from_environment,
)

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}


def test_no_endpoint_and_no_exporter_setting_exports_nowhere() -> None:
    assert span_exporters_from_environment({}) == {}
    assert metric_exporters_from_environment({}) == {}


def test_an_otlp_endpoint_selects_otlp_over_grpc_for_traces_and_metrics() -> None:
    assert isinstance(span_exporters_from_environment(ENDPOINT)["otlp"], GrpcSpanExporter)
    assert isinstance(metric_exporters_from_environment(ENDPOINT)["otlp"], GrpcMetricExporter)


def test_a_signal_specific_endpoint_selects_otlp_for_that_signal_only() -> None:
    env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}

    assert list(span_exporters_from_environment(env)) == ["otlp"]
    assert metric_exporters_from_environment(env) == {}


def test_http_protobuf_selects_the_otlp_http_exporters() -> None:
    env = {**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}

    assert isinstance(span_exporters_from_environment(env)["otlp"], HttpSpanExporter)
    assert isinstance(metric_exporters_from_environment(env)["otlp"], HttpMetricExporter)


def test_the_signal_specific_protocol_wins_over_the_general_one() -> None:
    env = {
        **ENDPOINT,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc",
    }

    assert isinstance(span_exporters_from_environment(env)["otlp"], HttpSpanExporter)
    assert isinstance(metric_exporters_from_environment(env)["otlp"], GrpcMetricExporter)


def test_exporters_are_a_comma_separated_list() -> None:
    traces = span_exporters_from_environment({**ENDPOINT, "OTEL_TRACES_EXPORTER": "otlp, console"})
    metrics = metric_exporters_from_environment({"OTEL_METRICS_EXPORTER": "console,prometheus"})

    assert isinstance(traces["otlp"], GrpcSpanExporter)
    assert isinstance(traces["console"], ConsoleSpanExporter)
    assert isinstance(metrics["console"], ConsoleMetricExporter)
    assert metrics["prometheus"] is None  # a pull endpoint, served by a reader


def test_none_turns_an_exporter_off_even_with_an_endpoint() -> None:
    assert span_exporters_from_environment({**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}) == {}


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin", "OTEL_TRACES_EXPORTER: zipkin is not supported"),
        ("OTEL_TRACES_EXPORTER", "otlp,none", "OTEL_TRACES_EXPORTER: 'none' cannot be combined"),
        ("OTEL_METRICS_EXPORTER", "statsd", "OTEL_METRICS_EXPORTER: statsd is not supported"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' is not supported"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "udp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'udp'"),
    ],
)
def test_a_value_that_cannot_be_honoured_is_refused_naming_the_variable(variable: str, value: str, named: str) -> None:
    env = {**ENDPOINT, variable: value}
    chooser = metric_exporters_from_environment if "METRICS" in variable else span_exporters_from_environment

    with pytest.raises(ConfigurationError, match=named):
        chooser(env)


def test_the_process_metrics_port_wins_and_the_specification_defaults_apply_otherwise() -> None:
    ours = MetricsEndpoint("0.0.0.0", 59152)

    assert prometheus_endpoint(ours, wants_prometheus=True, env={}) == ours
    assert prometheus_endpoint(None, wants_prometheus=False, env={}) is None
    assert prometheus_endpoint(None, True, {}) == MetricsEndpoint("localhost", PROMETHEUS_DEFAULT_PORT)
    env = {"OTEL_EXPORTER_PROMETHEUS_HOST": "0.0.0.0", "OTEL_EXPORTER_PROMETHEUS_PORT": "9999"}
    assert prometheus_endpoint(None, True, env) == MetricsEndpoint("0.0.0.0", 9999)
    with pytest.raises(ConfigurationError, match="OTEL_EXPORTER_PROMETHEUS_PORT"):
        prometheus_endpoint(None, True, {"OTEL_EXPORTER_PROMETHEUS_PORT": "nine"})


def test_every_resource_names_the_service_its_version_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)

    attributes = resource_for("loanbook-payment", "production").attributes

    assert attributes[SERVICE_NAME] == "loanbook-payment"
    assert attributes[DEPLOYMENT_ENVIRONMENT] == "production"
    assert str(attributes[SERVICE_VERSION])  # the installed package's version


def test_the_operators_resource_attributes_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "payments-eu")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging")

    attributes = resource_for("loanbook-payment", "production").attributes

    assert attributes[SERVICE_NAME] == "payments-eu"
    assert attributes[DEPLOYMENT_ENVIRONMENT] == "staging"


def test_the_sdk_off_switch_installs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry import metrics, trace

    from chassis.telemetry import configure_telemetry

    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")  # not even read
    tracer_provider, meter_provider = trace.get_tracer_provider(), metrics.get_meter_provider()

    telemetry = configure_telemetry("loanbook-payment", metrics_endpoint=MetricsEndpoint("127.0.0.1", 0))

    assert (telemetry.trace_exporters, telemetry.metric_exporters, telemetry.metrics_address) == ([], [], None)
    assert trace.get_tracer_provider() is tracer_provider
    assert metrics.get_meter_provider() is meter_provider


def test_a_metrics_port_taken_by_another_process_is_refused_naming_the_setting() -> None:
    import socket

    from chassis.telemetry import _prometheus_reader

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        endpoint = MetricsEndpoint("127.0.0.1", port, "LOANBOOK_PAYMENT_METRICS_PORT")

        with pytest.raises(
            ConfigurationError, match=f"LOANBOOK_PAYMENT_METRICS_PORT: 127.0.0.1:{port} cannot be served"
        ):
            _prometheus_reader(endpoint)
