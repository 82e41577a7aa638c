"""protobuf messages as canonical JSON dicts, fast: one generated conversion function per message type.

json_format.MessageToDict inspects every field of every message on every call; for a page of 50 payments that
was most of the gateway's own time per request (bench/gateway_overhead.py). This builds, once per message type,
a function that reads each field by name and converts it (the source is generated from the descriptor, like
dataclasses generate `__init__`: a loop over (name, converter) pairs cost about as much again in calls and tuple
unpacking), and gives exactly what `MessageToDict(message, always_print_fields_with_no_presence=True)` gives
(tests/unit/test_proto_json.py checks that on generated messages). Field kinds outside what the loanbook protos
use (floats, bytes, well-known types other than Timestamp) are left to json_format, per message type.
"""

from __future__ import annotations

import functools
import keyword
from collections.abc import Callable
from datetime import date, timedelta
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
_EPOCH = date(1970, 1, 1)
_SECONDS_PER_DAY = 86_400
TIMESTAMP = "google.protobuf.Timestamp"


class _Unsupported(Exception):
    """A field kind this module leaves to json_format."""


def message_to_json(message: Message) -> dict[str, Any]:
    """`MessageToDict(message, always_print_fields_with_no_presence=True)`, without per-call reflection."""
    result: dict[str, Any] = _message_converter(message.DESCRIPTOR)(message)
    return result


_TWO_DIGITS = [f"{number:02d}" for number in range(60)]


@functools.lru_cache(maxsize=4096)
def _date_text(days: int) -> str:
    # isoformat() writes exactly the digits protobuf writes (4-digit years); a page's timestamps share few days.
    return (_EPOCH + timedelta(days=days)).isoformat() + "T"


def timestamp_json(timestamp: Any) -> str:
    """RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits, as protobuf's Timestamp.ToJsonString writes it."""
    days, clock = divmod(timestamp.seconds, _SECONDS_PER_DAY)  # floor division: right before 1970 too
    hours, clock = divmod(clock, 3600)
    minutes, seconds = divmod(clock, 60)
    moment = f"{_date_text(days)}{_TWO_DIGITS[hours]}:{_TWO_DIGITS[minutes]}:{_TWO_DIGITS[seconds]}"
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
    namespace: dict[str, Any] = {}
    lines = ["def convert(message):", "    result = {}"]
    try:
        for index, field in enumerate(descriptor.fields):
            name = field.name
            # A field named like a Python keyword is still an attribute, just not one to write as `message.from`.
            read = f"getattr(message, {name!r})" if keyword.iskeyword(name) else f"message.{name}"
            value = _field_expression(field, read, f"_f{index}", namespace)
            store = f"result[{field.json_name!r}] = {value}"
            if field.has_presence:
                lines += [f"    if message.HasField({name!r}):", f"        {store}"]
            else:
                lines.append(f"    {store}")
    except _Unsupported:
        return functools.partial(json_format.MessageToDict, always_print_fields_with_no_presence=True)
    lines.append("    return result")
    # Only descriptor names (identifiers) and repr()'d strings reach the source; converters go by namespace.
    exec("\n".join(lines), namespace)  # noqa: S102
    convert: Convert = namespace["convert"]
    return convert


def _field_expression(field: FieldDescriptor, read: str, helper: str, namespace: dict[str, Any]) -> str:
    """The expression giving `field`'s JSON value from `read`, with any converter it calls put in `namespace`."""
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key_field, value_field = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
        key_of = _map_key if key_field.type == FieldDescriptor.TYPE_BOOL else str
        value_of = _value_converter(value_field)
        namespace[helper] = lambda mapping: {key_of(key): value_of(value) for key, value in mapping.items()}
        return f"{helper}({read})"
    value_of = _value_converter(field)
    namespace[helper] = value_of
    if field.is_repeated:
        return f"list({read})" if value_of is _same else f"[{helper}(value) for value in {read}]"
    if value_of is _same:
        return read
    return f"{helper}({read})"


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
        # Looked up when first called, not now: a message type may contain itself.
        converter: list[Convert] = []

        def convert_nested(message: Any) -> Any:
            if not converter:
                converter.append(_message_converter(nested))
            return converter[0](message)

        return convert_nested
    raise _Unsupported(field.full_name)  # float, double, bytes: json_format's rules


def _same(value: Any) -> Any:
    return value


def _map_key(key: bool) -> str:
    return "true" if key else "false"
