"""The caller's identity survives the trip through gRPC metadata, and inconsistent metadata names nobody."""

from __future__ import annotations

import pytest

from chassis.identity import (
    CUSTOMER_ID_KEY,
    ROLE_KEY,
    SUBJECT_KEY,
    Caller,
    Role,
    caller_from_metadata,
    caller_metadata,
)


@pytest.mark.parametrize(
    "caller",
    [Caller(Role.ADMIN, "root"), Caller(Role.OFFICER, "o-1"), Caller(Role.CUSTOMER, "idp-9", customer_id="c-9")],
)
def test_a_caller_round_trips_through_metadata(caller: Caller) -> None:
    assert caller_from_metadata(caller_metadata(caller)) == caller


def test_only_a_customer_carries_a_customer_id_key() -> None:
    assert dict(caller_metadata(Caller(Role.CUSTOMER, "s", customer_id="c")))[CUSTOMER_ID_KEY] == "c"
    assert CUSTOMER_ID_KEY not in dict(caller_metadata(Caller(Role.OFFICER, "s")))


def test_other_metadata_is_ignored() -> None:
    metadata: list[tuple[str, str | bytes]] = [
        ("traceparent", "00-..."),
        (ROLE_KEY, "officer"),
        ("x-other-bin", b"\x00"),
        (SUBJECT_KEY, "o-1"),
    ]

    assert caller_from_metadata(metadata) == Caller(Role.OFFICER, "o-1")


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        [],
        [(ROLE_KEY, "officer")],
        [(SUBJECT_KEY, "o-1")],
        [(ROLE_KEY, "root"), (SUBJECT_KEY, "o-1")],
        [(ROLE_KEY, "customer"), (SUBJECT_KEY, "u")],
        [(ROLE_KEY, "admin"), (SUBJECT_KEY, "u"), (CUSTOMER_ID_KEY, "c")],
    ],
    ids=["none", "empty", "no-subject", "no-role", "unknown-role", "customer-without-id", "staff-with-customer-id"],
)
def test_absent_or_inconsistent_metadata_is_no_caller(metadata: list[tuple[str, str | bytes]] | None) -> None:
    assert caller_from_metadata(metadata) is None


def test_a_customer_is_only_itself() -> None:
    caller = Caller(Role.CUSTOMER, "u", customer_id="c-1")

    assert caller.is_customer("c-1")
    assert not caller.is_customer("c-2")
    assert not Caller(Role.ADMIN, "root").is_customer("c-1")
