"""Opaque, time-ordered identifiers (UUIDv7) and their validation."""

from __future__ import annotations

import uuid

from uuid_utils import compat

from chassis.errors import FieldViolation


def new_id() -> uuid.UUID:
    """A UUIDv7: ordered by creation time, so keyset pagination by id follows creation order."""
    return compat.uuid7()


def parse_id(value: str, field: str) -> tuple[uuid.UUID | None, list[FieldViolation]]:
    if not value:
        return None, [FieldViolation(field, "is required")]
    try:
        return uuid.UUID(value), []
    except ValueError:
        return None, [FieldViolation(field, "must be an id issued by loanbook (a UUID)")]
