"""Identifiers: new ids are time-ordered UUIDs; parsed ids behave exactly like uuid.UUID and bad text is refused."""

from __future__ import annotations

import pickle
import uuid

import pytest

from chassis.ids import new_id, parse_id, uuid_from_text


def test_new_ids_are_uuid7_in_creation_order() -> None:
    first, second = new_id(), new_id()

    assert (first.version, second.version) == (7, 7)
    assert first < second


def test_a_parsed_id_is_interchangeable_with_uuid_uuid() -> None:
    plain = uuid.uuid4()
    parsed = uuid_from_text(str(plain))

    assert isinstance(parsed, uuid.UUID)
    assert parsed == plain
    assert hash(parsed) == hash(plain)
    assert str(parsed) == str(plain)
    assert (parsed.int, parsed.hex, parsed.bytes) == (plain.int, plain.hex, plain.bytes)
    assert {parsed: "found"}[plain] == "found"
    assert pickle.loads(pickle.dumps(parsed)) == plain  # noqa: S301 - our own bytes, just made
    later = uuid.UUID(int=plain.int + 1)
    assert parsed < later
    assert not later < parsed


NOT_UUIDS = ["", "xyz", "0193a000-0000-7000-8000-000000000c0", "g193a000-0000-7000-8000-000000000c01"]


@pytest.mark.parametrize("text", NOT_UUIDS)
def test_text_that_is_not_a_uuid_is_refused_naming_the_field(text: str) -> None:
    with pytest.raises(ValueError, match="UUID"):
        uuid_from_text(text)
    parsed, violations = parse_id(text, "payment_id")

    assert parsed is None
    assert [violation.field for violation in violations] == ["payment_id"]
