"""protobuf messages as canonical JSON dicts, fast: one conversion plan per message type instead of reflection.

json_format.MessageToDict inspects every field of every message on every call; for a page of 50 payments that
was most of the gateway's own time per request (bench/gateway_overhead.py). This builds, once per message type,
the list of fields with a converter each, and gives exactly what `MessageToDict(message,
always_print_fields_with_no_presence=True)` gives (tests/unit/test_proto_json.py checks that on generated
messages). Field kinds outside what the loanbook protos use (floats, bytes, well-known types other than
Timestamp) are left to json_format, per message type.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

Convert = Callable[[Any], Any]

_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}
_AS_IS = {
    FieldDescriptor.TYPE_STRING,
    FieldDescriptor.TYPE_BOOL,
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_SFIXED32,
}
# Naive on purpose: isoformat() then writes exactly the digits protobuf writes (4-digit years, no offset).
_EPOCH = datetime(1970, 1, 1)
TIMESTAMP = "google.protobuf.Timestamp"


class _Unsupported(Exception):
    """A field kind this module leaves to json_format."""


def message_to_json(message: Message) -> dict[str, Any]:
    """`MessageToDict(message, always_print_fields_with_no_presence=True)`, without per-call reflection."""
    result: dict[str, Any] = _message_converter(message.DESCRIPTOR)(message)
    return result


def timestamp_json(timestamp: Any) -> str:
    """RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits, as protobuf's Timestamp.ToJsonString writes it."""
    moment = (_EPOCH + timedelta(seconds=timestamp.seconds)).isoformat()
    nanos = timestamp.nanos
    if nanos == 0:
        return moment + "Z"
    if nanos % 1_000_000 == 0:
        return f"{moment}.{nanos // 1_000_000:03d}Z"
    if nanos % 1000 == 0:
        return f"{moment}.{nanos // 1000:06d}Z"
    return f"{moment}.{nanos:09d}Z"


@functools.cache
def _message_converter(descriptor: Descriptor) -> Convert:
    try:
        fields = [
            (field.name, field.json_name, field.has_presence, _field_converter(field)) for field in descriptor.fields
        ]
    except _Unsupported:
        return functools.partial(json_format.MessageToDict, always_print_fields_with_no_presence=True)

    def convert(message: Any) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for name, json_name, has_presence, value_of in fields:
            if has_presence and not message.HasField(name):
                continue
            result[json_name] = value_of(getattr(message, name))
        return result

    return convert


def _field_converter(field: FieldDescriptor) -> Convert:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key_field, value_field = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
        key_of = _map_key if key_field.type == FieldDescriptor.TYPE_BOOL else str
        value_of = _value_converter(value_field)
        return lambda mapping: {key_of(key): value_of(value) for key, value in mapping.items()}
    value_of = _value_converter(field)
    if field.is_repeated:
        return lambda values: [value_of(value) for value in values]
    return value_of


def _value_converter(field: FieldDescriptor) -> Convert:
    if field.type in _AS_IS:
        return _same
    if field.type in _INT64:
        return str
    if field.type == FieldDescriptor.TYPE_ENUM and field.enum_type is not None:
        names = {value.number: value.name for value in field.enum_type.values}
        return lambda number: names.get(number, number)  # an unknown number stays a number, as in json_format
    if field.type == FieldDescriptor.TYPE_MESSAGE and (nested := field.message_type) is not None:
        if nested.full_name == TIMESTAMP:
            return timestamp_json
        if nested.full_name.startswith("google.protobuf."):
            raise _Unsupported(field.full_name)  # well-known types have JSON forms of their own
        return lambda message: _message_converter(nested)(message)
    raise _Unsupported(field.full_name)  # float, double, bytes: json_format's rules


def _same(value: Any) -> Any:
    return value


def _map_key(key: bool) -> str:
    return "true" if key else "false"
