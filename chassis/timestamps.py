"""Timestamps on the wire: google.protobuf.Timestamp and sortable strings, to and from aware UTC datetimes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2

from chassis.errors import FieldViolation, InvalidArgument

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# What google.protobuf.Timestamp allows (and a datetime holds); a client can send any int64 seconds and int32 nanos.
OUT_OF_RANGE = "must be a valid Timestamp: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z, nanos 0-999999999"


def set_timestamp(target: timestamp_pb2.Timestamp, value: datetime) -> None:
    """Write `value` into a Timestamp field in place (plain arithmetic: Timestamp.FromDatetime and sub-message
    copies dominated the cost of filling a page of messages; 0.50 ms -> 0.20 ms for a page of 50 payments)."""
    delta = value - EPOCH
    target.seconds = delta.days * 86_400 + delta.seconds
    target.nanos = delta.microseconds * 1000


def optional_datetime(message: Any, field: str) -> datetime | None:
    """The field as an aware UTC datetime, None when the field is not set; out of range → INVALID_ARGUMENT."""
    if not message.HasField(field):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, field)
    try:
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument([FieldViolation(field, OUT_OF_RANGE)]) from None


def sortable_utc(value: datetime) -> str:
    """Fixed-width UTC ISO-8601 with microseconds ("2026-11-01T09:00:00.000000Z"), so that string order is time order
    (DynamoDB sort keys compare strings)."""
    if value.tzinfo is None:
        raise ValueError("stored timestamps must be timezone-aware")
    t = value.astimezone(UTC)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond:06d}Z"
