"""DynamoDB item sizes as AWS counts them, from items in the low-level form ({"S": "..."}, {"N": "..."})."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal

# Per item, for storage only: what DynamoDB adds for its own indexing, to the table and to each index entry.
STORAGE_OVERHEAD_BYTES: Final = 100
# A list or a map costs this much on top of its elements, and one byte per element.
CONTAINER_BYTES: Final = 3

Projection = Literal["ALL", "KEYS_ONLY"] | Sequence[str]


def _utf8(text: str) -> int:
    return len(text.encode())


def number_size(text: str) -> int:
    """1 byte per two significant digits (leading and trailing zeros trimmed), plus 1 byte."""
    digits = text.lstrip("+-").lower().split("e")[0].replace(".", "")
    significant = digits.strip("0") or "0"
    return math.ceil(len(significant) / 2) + 1


def value_size(value: Mapping[str, Any]) -> int:
    """The size of one attribute value, without its name."""
    [(kind, data)] = value.items()
    match kind:
        case "S":
            return _utf8(data)
        case "N":
            return number_size(data)
        case "B":
            return len(data) if isinstance(data, bytes | bytearray) else len(base64.b64decode(data))
        case "BOOL" | "NULL":
            return 1
        case "SS":
            return sum(_utf8(element) for element in data)
        case "NS":
            return sum(number_size(element) for element in data)
        case "BS":
            return sum(value_size({"B": element}) for element in data)
        case "L":
            return CONTAINER_BYTES + sum(value_size(element) + 1 for element in data)
        case "M":
            return CONTAINER_BYTES + sum(_utf8(name) + value_size(element) + 1 for name, element in data.items())
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
