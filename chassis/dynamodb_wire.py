"""Query and Scan pages whose items are DynamoDB's wire JSON, spared botocore's per-attribute parsing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final

import orjson

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import QueryInputTypeDef, ScanInputTypeDef

# botocore parses a response by walking the service model for every attribute value of every item: for a page of
# items that walk costs several times DynamoDB's JSON decoding (profiled: about 3/4 of a full verification's CPU,
# and most of the payment service's time on a 50-payment history page beyond the call itself). The wire format of
# an item *is* the low-level attribute-value form ({"pk": {"S": "..."}, "version": {"N": "3"}}) that botocore
# returns and the adapters' item functions produce, so these calls hand "Items" over as decoded JSON: a handler on
# before-parse takes them out of the body and botocore parses the rest (keys, counts, errors) as usual. Signing,
# retries, error handling and instrumentation stay botocore's. The one difference: binary (B, BS) values stay
# base64 text, where botocore would decode them to bytes; no table read this way has any.

_WIRE_ITEMS: ContextVar[bool] = ContextVar("loanbook_dynamodb_wire_items", default=False)


def _keep_items_as_sent(response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any) -> None:
    if not _WIRE_ITEMS.get() or response_dict.get("status_code", 500) >= 300:
        return
    body = orjson.loads(response_dict["body"])
    items = body.pop("Items", None)
    if items is None:
        return
    customized_response_dict["Items"] = items  # merged into the parsed response
    response_dict["body"] = orjson.dumps(body)


OPERATIONS: Final = ("Query", "Scan")
_REGISTERED: Final = "loanbook_wire_items_registered"


def _register(client: DynamoDBClient) -> None:
    # Once per client: botocore's register walks its event aliases every time (profiled: 5 % of a Query's CPU).
    if getattr(client.meta, _REGISTERED, False):
        return
    setattr(client.meta, _REGISTERED, True)
    for operation in OPERATIONS:
        # One unique id per event: botocore keeps a unique id once per emitter, whatever the event.
        client.meta.events.register(
            f"before-parse.dynamodb.{operation}", _keep_items_as_sent, unique_id=f"loanbook-wire-items-{operation}"
        )


async def _with_wire_items(client: DynamoDBClient, call: Callable[[], Awaitable[Mapping[str, Any]]]) -> dict[str, Any]:
    """Runs one call with the handler switched on for the calling task only (a context variable): other calls on
    the same client, in other tasks, are parsed by botocore as usual."""
    _register(client)
    token = _WIRE_ITEMS.set(True)
    try:
        return dict(await call())
    finally:
        _WIRE_ITEMS.reset(token)


async def query_page(client: DynamoDBClient, request: QueryInputTypeDef) -> dict[str, Any]:
    """One Query whose "Items" are the wire's low-level JSON."""
    return await _with_wire_items(client, lambda: client.query(**request))


async def scan_page(client: DynamoDBClient, request: ScanInputTypeDef) -> dict[str, Any]:
    """One Scan whose "Items" are the wire's low-level JSON."""
    return await _with_wire_items(client, lambda: client.scan(**request))
