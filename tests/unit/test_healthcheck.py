"""`loanbook-healthcheck`: which probe a target means, and exit code 1 with a reason for a target it cannot use."""

import pytest

from chassis.healthcheck import BadTarget, GrpcTarget, HttpTarget, main, parse_target


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("grpc://127.0.0.1:50151", GrpcTarget("127.0.0.1:50151", "liveness")),
        ("grpc://127.0.0.1:50151/", GrpcTarget("127.0.0.1:50151", "")),
        (
            "grpc://payment:50152/loanbook.payment.v1.PaymentService",
            GrpcTarget("payment:50152", "loanbook.payment.v1.PaymentService"),
        ),
        ("http://127.0.0.1:58080/livez", HttpTarget("http://127.0.0.1:58080/livez")),
        (" https://gateway/readyz ", HttpTarget("https://gateway/readyz")),
    ],
)
def test_a_target_names_the_probe(target: str, expected: GrpcTarget | HttpTarget) -> None:
    assert parse_target(target) == expected


@pytest.mark.parametrize("target", ["127.0.0.1:50151", "grpc://127.0.0.1", "tcp://127.0.0.1:1", "http://"])
def test_a_target_it_cannot_probe_is_refused(target: str) -> None:
    with pytest.raises(BadTarget, match="grpc://HOST:PORT"):
        parse_target(target)


def test_no_target_is_unhealthy_and_says_what_to_set(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], env={}) == 1
    assert "LOANBOOK_HEALTHCHECK_TARGET" in capsys.readouterr().err


def test_a_bad_target_from_the_environment_is_unhealthy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], env={"LOANBOOK_HEALTHCHECK_TARGET": "localhost:1"}) == 1
    assert "LOANBOOK_HEALTHCHECK_TARGET 'localhost:1'" in capsys.readouterr().err
