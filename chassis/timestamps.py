"""google.protobuf.Timestamp to and from aware UTC datetimes, cheaply enough for pages of hundreds of messages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def set_timestamp(target: timestamp_pb2.Timestamp, value: datetime) -> None:
    """Write `value` into a Timestamp field in place (plain arithmetic: Timestamp.FromDatetime and sub-message
    copies dominated the cost of filling a page of messages)."""
    delta = value - EPOCH
    target.seconds = delta.days * 86_400 + delta.seconds
    target.nanos = delta.microseconds * 1000


def optional_datetime(message: Any, field: str) -> datetime | None:
    """The field as an aware UTC datetime, None when the field is not set."""
    if not message.HasField(field):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, field)
    return stamp.ToDatetime(tzinfo=UTC)
