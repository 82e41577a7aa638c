"""Log lines are JSON objects that carry the active trace and span ids."""

import io
import json
import logging

from opentelemetry.sdk.trace import TracerProvider

from chassis.structured_logging import JsonFormatter, TraceContextFilter


def _capture(logger_name: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(JsonFormatter("loanbook-test"))
    logger = logging.getLogger(logger_name)
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_log_line_inside_a_span_carries_its_trace_and_span_ids() -> None:
    logger, stream = _capture("test.inside")
    tracer = TracerProvider().get_tracer("test")

    with tracer.start_as_current_span("work") as span:
        logger.info("payment recorded", extra={"payment_id": "p-1"})
        context = span.get_span_context()

    line = json.loads(stream.getvalue())
    assert line["message"] == "payment recorded"
    assert line["level"] == "INFO"
    assert line["service"] == "loanbook-test"
    assert line["payment_id"] == "p-1"
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")


def test_log_line_outside_a_span_has_empty_ids_and_includes_exceptions() -> None:
    logger, stream = _capture("test.outside")

    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")

    line = json.loads(stream.getvalue())
    assert line["trace_id"] == ""
    assert line["span_id"] == ""
    assert "ValueError: boom" in line["exception"]
