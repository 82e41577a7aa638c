"""Domain errors raised by use cases in every service; translated to status codes only at the edge."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: its path in the request (proto field names, dotted) and what is wrong with it."""

    field: str
    description: str


class DomainError(Exception):
    """Base of the errors a use case raises on purpose; the message is safe to show a caller (no PII)."""


class InvalidArgument(DomainError):
    def __init__(self, violations: Sequence[FieldViolation], message: str | None = None) -> None:
        self.violations = list(violations)
        fields = ", ".join(violation.field for violation in self.violations)
        super().__init__(message or f"invalid request: {fields}")


class NotFound(DomainError):
    def __init__(self, resource: str, resource_id: str) -> None:
        self.resource = resource
        self.resource_id = resource_id
        super().__init__(f"{resource} {resource_id} not found")


class AlreadyExists(DomainError):
    """A uniqueness rule refused the write; `field` names what must be unique."""

    def __init__(self, resource: str, field: str) -> None:
        self.resource = resource
        self.field = field
        super().__init__(f"a {resource} with this {field} already exists")


class FailedPrecondition(DomainError):
    """The request is valid but the system is not in a state to carry it out (e.g. an illegal transition)."""


class VersionConflict(DomainError):
    """Optimistic concurrency: the caller's version is not the current one. Re-read and retry."""

    def __init__(self, resource: str, resource_id: str, expected: int, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"{resource} {resource_id} is at version {actual}, not {expected}; re-read and retry")


class Unavailable(DomainError):
    """A store or peer service is down; the caller may retry."""


class PermissionDenied(DomainError):
    pass


class Unauthenticated(DomainError):
    pass
