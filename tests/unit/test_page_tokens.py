"""Page tokens are opaque, tamper-evident, expiring and bound to the query that issued them."""

import pytest

from chassis.errors import InvalidArgument
from chassis.page_tokens import MAX_PAGE_SIZE, PageTokens, page_size_or_default

QUERY = {"list": "customers", "branch_id": "b-1"}


def test_a_token_carries_the_position_back() -> None:
    tokens = PageTokens("s" * 32, "customer")

    token = tokens.encode(QUERY, {"id": "0193"})

    assert tokens.decode(token, QUERY) == {"id": "0193"}


def test_an_empty_token_means_the_first_page() -> None:
    assert PageTokens("s" * 32, "customer").decode("", QUERY) is None


@pytest.mark.parametrize("mutate", [lambda t: t[:-2] + "xx", lambda t: "A" + t[1:], lambda t: "garbage"])
def test_a_forged_token_is_refused(mutate: object) -> None:
    tokens = PageTokens("s" * 32, "customer")
    forged = mutate(tokens.encode(QUERY, {"id": "0193"}))  # type: ignore[operator]

    with pytest.raises(InvalidArgument) as refused:
        tokens.decode(forged, QUERY)
    assert refused.value.violations[0].field == "page_token"


def test_a_token_signed_with_another_secret_or_namespace_is_refused() -> None:
    token = PageTokens("s" * 32, "customer").encode(QUERY, {"id": "1"})

    for other in (PageTokens("t" * 32, "customer"), PageTokens("s" * 32, "payment")):
        with pytest.raises(InvalidArgument, match="page_token"):
            other.decode(token, QUERY)


def test_a_token_is_refused_for_a_different_query() -> None:
    tokens = PageTokens("s" * 32, "customer")
    token = tokens.encode(QUERY, {"id": "1"})

    with pytest.raises(InvalidArgument) as refused:
        tokens.decode(token, {**QUERY, "branch_id": "b-2"})
    assert "different query" in refused.value.violations[0].description


def test_a_stale_token_is_refused() -> None:
    now = [1_800_000_000.0]
    tokens = PageTokens("s" * 32, "customer", max_age_seconds=60, clock=lambda: now[0])
    token = tokens.encode(QUERY, {"id": "1"})
    now[0] += 60
    assert tokens.decode(token, QUERY) == {"id": "1"}  # a minute old: still good
    now[0] += 2

    with pytest.raises(InvalidArgument) as refused:
        tokens.decode(token, QUERY)
    assert "expired" in refused.value.violations[0].description


def test_page_size_defaults_and_bounds() -> None:
    assert page_size_or_default(0) == 50
    assert page_size_or_default(7) == 7
    for bad in (-1, MAX_PAGE_SIZE + 1):
        with pytest.raises(InvalidArgument, match="page_size"):
            page_size_or_default(bad)
