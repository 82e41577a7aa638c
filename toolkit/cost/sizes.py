"""DynamoDB item sizes as AWS counts them, from items in the low-level form ({"S": "..."}, {"N": "..."})."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final, Literal

# The rules are the developer guide's "item sizes and formats" page (each attribute: its name's UTF-8 bytes plus its
# value's size) and, for index entries and storage, its "storage considerations for global secondary indexes".

# Per item, for storage only (not for capacity units): "every item in DynamoDB requires 100 bytes of storage overhead
# for indexing", and so does every entry of a global secondary index.
STORAGE_OVERHEAD_BYTES: Final = 100
# "An attribute of type List or Map requires 3 bytes of overhead, regardless of its contents" ...
CONTAINER_BYTES: Final = 3
# ... "and each List or Map element also requires 1 byte of overhead".
ELEMENT_BYTES: Final = 1

Projection = Literal["ALL", "KEYS_ONLY"] | Sequence[str]


def _utf8(text: str) -> int:
    return len(text.encode())


def number_size(text: str) -> int:
    """AWS documents a number as "approximately 1 byte per two significant digits, plus 1 byte" (leading and trailing
    zeros trimmed). Exactly, as DynamoDB encodes it (and DynamoDB Local charges it, measured byte for byte): the
    digits go in base-100 pairs aligned at the decimal point (1.5 is the pairs 01|50, two bytes), leading and
    trailing zero pairs dropped, plus 1 byte of exponent, plus 1 byte when negative; zero takes 1 byte."""
    value = Decimal(text)
    if value.is_zero():
        return 1
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # a finite number: DynamoDB has no NaN or infinity
    significant = list(digits)
    while significant[-1] == 0:  # trailing zeros move into the exponent
        significant.pop()
        exponent += 1
    if exponent % 2:  # the last digit is the high digit of its pair
        significant.append(0)
    pairs = math.ceil(len(significant) / 2)
    return pairs + 1 + sign


def value_size(value: Mapping[str, Any]) -> int:
    """The size of one attribute value, without its name."""
    [(kind, data)] = value.items()
    match kind:
        case "S":  # UTF-8 bytes
            return _utf8(data)
        case "N":
            return number_size(data)
        case "B":  # the raw bytes, not their base64 form on the wire
            return len(data) if isinstance(data, bytes | bytearray) else len(base64.b64decode(data))
        case "BOOL" | "NULL":  # 1 byte
            return 1
        case "SS":  # a set: its elements (DynamoDB Local charges no overhead on top, measured)
            return sum(_utf8(element) for element in data)
        case "NS":
            return sum(number_size(element) for element in data)
        case "BS":
            return sum(value_size({"B": element}) for element in data)
        case "L":
            return CONTAINER_BYTES + sum(value_size(element) + ELEMENT_BYTES for element in data)
        case "M":
            return CONTAINER_BYTES + sum(
                _utf8(name) + value_size(element) + ELEMENT_BYTES for name, element in data.items()
            )
    raise ValueError(f"not a DynamoDB attribute value type: {kind!r}")


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """The item's size in bytes: each attribute's name (UTF-8) plus its value. What reads and writes are charged on."""
    return sum(_utf8(name) + value_size(value) for name, value in item.items())


def projected(
    item: Mapping[str, Mapping[str, Any]], table_key: Iterable[str], index_key: Iterable[str], projection: Projection
) -> dict[str, Mapping[str, Any]] | None:
    """The entry a global secondary index holds for the item, or None when the item lacks the index's key (a sparse
    index holds no entry for it). The entry carries the table's key, the index's key and the projected attributes."""
    index_key = list(index_key)
    if any(name not in item for name in index_key):
        return None
    if projection == "ALL":
        return dict(item)
    names = {*table_key, *index_key, *(() if projection == "KEYS_ONLY" else projection)}
    return {name: value for name, value in item.items() if name in names}
