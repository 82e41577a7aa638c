"""Who is calling: the identity the gateway authenticates and hands to every service as gRPC metadata.

The contract (keys are lowercase ASCII, values are plain strings):

- `x-loanbook-caller-role`: one of `customer`, `officer`, `admin`, `service`;
- `x-loanbook-caller-subject`: the token's `sub` (who signed in);
- `x-loanbook-caller-customer-id`: the customer the caller is, sent only when the role is `customer`.

Services trust this metadata because only the gateway reaches them (private network, mTLS when configured);
the gateway drops anything a client might send under these names, since it builds the metadata itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

ROLE_KEY = "x-loanbook-caller-role"
SUBJECT_KEY = "x-loanbook-caller-subject"
CUSTOMER_ID_KEY = "x-loanbook-caller-customer-id"


class Role(StrEnum):
    CUSTOMER = "customer"
    OFFICER = "officer"
    ADMIN = "admin"
    SERVICE = "service"


@dataclass(frozen=True)
class Caller:
    """An authenticated caller; `customer_id` is set exactly when the role is `customer`."""

    role: Role
    subject: str
    customer_id: str | None = None

    def __post_init__(self) -> None:
        if not self.subject:
            raise ValueError("a caller needs a subject")
        if (self.role is Role.CUSTOMER) != bool(self.customer_id):
            raise ValueError("customer_id is required for, and only for, the customer role")

    def is_customer(self, customer_id: str) -> bool:
        """True when the caller is the customer `customer_id` itself."""
        return self.role is Role.CUSTOMER and self.customer_id == customer_id


def caller_metadata(caller: Caller) -> tuple[tuple[str, str], ...]:
    """The gRPC metadata that carries `caller` to a service."""
    metadata = [(ROLE_KEY, caller.role.value), (SUBJECT_KEY, caller.subject)]
    if caller.customer_id is not None:
        metadata.append((CUSTOMER_ID_KEY, caller.customer_id))
    return tuple(metadata)


def caller_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller | None:
    """The caller described by invocation metadata, or None when it is absent or inconsistent."""
    values: dict[str, str] = {}
    for key, value in metadata or ():
        if key in (ROLE_KEY, SUBJECT_KEY, CUSTOMER_ID_KEY) and isinstance(value, str):
            values.setdefault(key, value)
    try:
        return Caller(
            role=Role(values.get(ROLE_KEY, "")),
            subject=values.get(SUBJECT_KEY, ""),
            customer_id=values.get(CUSTOMER_ID_KEY) or None,
        )
    except ValueError:
        return None
