"""Opaque, time-ordered identifiers (UUIDv7) and their validation."""

from __future__ import annotations

import uuid

from asyncpg.pgproto.pgproto import UUID as _CompiledUUID
from uuid_utils import compat

from chassis.errors import FieldViolation


def new_id() -> uuid.UUID:
    """A UUIDv7: ordered by creation time, so keyset pagination by id follows creation order."""
    return compat.uuid7()


def uuid_from_text(text: str) -> uuid.UUID:
    """A UUID from its text form, as the compiled uuid.UUID subclass asyncpg returns for uuid columns.

    Equal, hashable, ordered and printed like uuid.UUID, but built about 8x and printed about 7x faster (measured
    0.95 -> 0.12 us and 0.53 -> 0.07 us): a page of 50 payments read from DynamoDB parses and prints 150 ids.
    Raises ValueError for text that is not a UUID.
    """
    return _CompiledUUID(text)


def parse_id(value: str, field: str) -> tuple[uuid.UUID | None, list[FieldViolation]]:
    if not value:
        return None, [FieldViolation(field, "is required")]
    try:
        return uuid_from_text(value), []
    except ValueError:
        return None, [FieldViolation(field, "must be an id issued by loanbook (a UUID)")]
