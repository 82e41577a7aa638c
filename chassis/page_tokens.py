"""Opaque, signed, expiring page tokens bound to the query they continue; independent of the back end."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from chassis.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
TOKEN_MAX_AGE_SECONDS = 24 * 3600


def query_fingerprint(query: Mapping[str, Any]) -> str:
    """A short digest of the filters, so a token cannot be replayed against a different query."""
    canonical = json.dumps(query, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def page_size_or_default(requested: int, field: str = "page_size") -> int:
    if requested < 0:
        raise InvalidArgument([FieldViolation(field, "must not be negative")])
    if requested > MAX_PAGE_SIZE:
        raise InvalidArgument([FieldViolation(field, f"must be at most {MAX_PAGE_SIZE}")])
    return requested or DEFAULT_PAGE_SIZE


class PageTokens:
    """Encodes a keyset position as a signed token; decoding checks signature, age and query."""

    def __init__(
        self,
        secret: str,
        namespace: str,
        max_age_seconds: int = TOKEN_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        class Signer(TimestampSigner):
            def get_timestamp(self) -> int:  # the token's age is measured by `clock` (tests move it)
                return int(clock())

        self._serializer = URLSafeTimedSerializer(secret, salt=f"loanbook.page-token.{namespace}", signer=Signer)
        self._max_age = max_age_seconds

    def encode(self, query: Mapping[str, Any], position: Mapping[str, Any]) -> str:
        return str(self._serializer.dumps({"q": query_fingerprint(query), "p": dict(position)}))

    def decode(self, token: str, query: Mapping[str, Any], field: str = "page_token") -> dict[str, Any] | None:
        """The position a token carries, None for an empty token; INVALID_ARGUMENT for anything else."""
        if not token:
            return None
        try:
            payload = self._serializer.loads(token, max_age=self._max_age)
        except SignatureExpired:
            raise InvalidArgument([FieldViolation(field, "page token expired; start from the first page")]) from None
        except BadSignature:
            raise InvalidArgument([FieldViolation(field, "page token is not valid")]) from None
        if not isinstance(payload, dict) or payload.get("q") != query_fingerprint(query):
            raise InvalidArgument([FieldViolation(field, "page token belongs to a different query")])
        position = payload.get("p")
        if not isinstance(position, dict):
            raise InvalidArgument([FieldViolation(field, "page token is not valid")])
        return position
