"""How test infrastructure is chosen: explicit address, then Docker, then local processes."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.testing import (
    DYNAMODB_ENV,
    POSTGRES_ENV,
    Selection,
    docker_available,
    dynamodb_for_tests,
    postgres_for_tests,
    select_backend,
)


class FakeDocker:
    """A Docker probe that remembers whether it was asked."""

    def __init__(self, answers: bool) -> None:
        self.answers = answers
        self.asked = 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.answers


class FakeClient:
    def __init__(self, ping_result: bool | Exception) -> None:
        self.ping_result = ping_result
        self.closed = False

    def ping(self) -> bool:
        if isinstance(self.ping_result, Exception):
            raise self.ping_result
        return self.ping_result

    def close(self) -> None:
        self.closed = True


def test_an_explicit_address_wins_without_asking_docker() -> None:
    docker = FakeDocker(answers=True)

    selection = select_backend(POSTGRES_ENV, {POSTGRES_ENV: "postgresql://x@db/loanbook"}, docker)

    assert selection == Selection("env", "postgresql://x@db/loanbook")
    assert docker.asked == 0


def test_containers_are_used_when_docker_answers_and_no_address_is_given() -> None:
    assert select_backend(DYNAMODB_ENV, {}, FakeDocker(answers=True)) == Selection("docker")


def test_local_processes_are_used_when_docker_does_not_answer() -> None:
    assert select_backend(DYNAMODB_ENV, {}, FakeDocker(answers=False)) == Selection("local")


def test_a_blank_address_counts_as_unset() -> None:
    assert select_backend(POSTGRES_ENV, {POSTGRES_ENV: "  "}, FakeDocker(answers=False)) == Selection("local")


def test_each_store_reads_only_its_own_variable() -> None:
    env = {POSTGRES_ENV: "postgresql://x@db/loanbook"}

    assert select_backend(DYNAMODB_ENV, env, FakeDocker(answers=False)) == Selection("local")


async def test_postgres_for_tests_yields_an_explicit_dsn_unchanged() -> None:
    docker = FakeDocker(answers=True)

    async with postgres_for_tests({POSTGRES_ENV: "postgresql://a:b@h:1/loanbook"}, docker) as dsn:
        assert dsn == "postgresql://a:b@h:1/loanbook"
    assert docker.asked == 0


async def test_dynamodb_for_tests_yields_an_explicit_endpoint_unchanged() -> None:
    async with dynamodb_for_tests({DYNAMODB_ENV: "http://ddb:8000"}, FakeDocker(answers=True)) as endpoint:
        assert endpoint == "http://ddb:8000"


def test_docker_is_unavailable_when_no_client_can_be_made() -> None:
    def no_daemon(**_: Any) -> FakeClient:
        raise RuntimeError("Error while fetching server API version")

    assert docker_available(no_daemon) is False


def test_docker_is_unavailable_when_the_ping_fails_and_the_client_is_closed() -> None:
    client = FakeClient(ConnectionError("refused"))

    assert docker_available(lambda **_: client) is False
    assert client.closed


def test_docker_is_available_when_the_ping_succeeds_within_the_timeout() -> None:
    client = FakeClient(True)
    seen: dict[str, Any] = {}

    def factory(**kwargs: Any) -> FakeClient:
        seen.update(kwargs)
        return client

    assert docker_available(factory, timeout=2.0) is True
    assert seen == {"timeout": 2.0}
    assert client.closed


@pytest.mark.parametrize("variable", [POSTGRES_ENV, DYNAMODB_ENV])
def test_the_variables_are_namespaced_for_loanbook_tests(variable: str) -> None:
    assert variable.startswith("LOANBOOK_TEST_")
