"""`loanbook-healthcheck`: which probe a target means, and exit code 1 with a reason for a target or TLS options it
cannot use (the probes themselves: tests/integration/test_healthcheck_tls.py and the compose and image tests)."""

from pathlib import Path

import pytest

from chassis.healthcheck import (
    BadTarget,
    BadTls,
    GrpcTarget,
    HttpTarget,
    TlsMaterial,
    TlsOptions,
    build_parser,
    load_tls,
    main,
    parse_target,
)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("grpc://127.0.0.1:50151", GrpcTarget("127.0.0.1:50151", "liveness")),
        ("grpc://127.0.0.1:50151/", GrpcTarget("127.0.0.1:50151", "")),
        (
            "grpc://payment:50152/loanbook.payment.v1.PaymentService",
            GrpcTarget("payment:50152", "loanbook.payment.v1.PaymentService"),
        ),
        ("grpcs://127.0.0.1:50151/liveness", GrpcTarget("127.0.0.1:50151", "liveness", tls=True)),
        ("grpcs://customer:50151/", GrpcTarget("customer:50151", "", tls=True)),
        ("http://127.0.0.1:58080/livez", HttpTarget("http://127.0.0.1:58080/livez")),
        (" https://gateway/readyz ", HttpTarget("https://gateway/readyz")),
    ],
)
def test_a_target_names_the_probe(target: str, expected: GrpcTarget | HttpTarget) -> None:
    assert parse_target(target) == expected


@pytest.mark.parametrize(
    "target", ["127.0.0.1:50151", "grpc://127.0.0.1", "grpcs://customer", "tcp://127.0.0.1:1", "http://"]
)
def test_a_target_it_cannot_probe_is_refused(target: str) -> None:
    with pytest.raises(BadTarget, match="grpc://HOST:PORT"):
        parse_target(target)


def test_no_target_is_unhealthy_and_says_what_to_set(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], env={}) == 1
    assert "LOANBOOK_HEALTHCHECK_TARGET" in capsys.readouterr().err


def test_a_bad_target_from_the_environment_is_unhealthy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], env={"LOANBOOK_HEALTHCHECK_TARGET": "localhost:1"}) == 1
    assert "LOANBOOK_HEALTHCHECK_TARGET 'localhost:1'" in capsys.readouterr().err


@pytest.fixture
def pem_files(tmp_path: Path) -> dict[str, Path]:
    """Stand-ins for PEM files: load_tls reads them and leaves their checking to the TLS handshake."""
    files = {name: tmp_path / name for name in ("ca.crt", "tls.crt", "tls.key")}
    for name, path in files.items():
        path.write_bytes(f"<{name}>".encode())
    return files


def test_tls_options_load_the_files_for_a_grpcs_target(pem_files: dict[str, Path]) -> None:
    options = TlsOptions(pem_files["ca.crt"], pem_files["tls.crt"], pem_files["tls.key"], "customer")
    assert load_tls(GrpcTarget("127.0.0.1:50151", "", tls=True), options) == TlsMaterial(
        root_certificates=b"<ca.crt>", private_key=b"<tls.key>", certificate_chain=b"<tls.crt>", server_name="customer"
    )
    # No options at all: TLS with the system's CAs and no client certificate.
    assert load_tls(GrpcTarget("payment:50152", "", tls=True), TlsOptions()) == TlsMaterial(None, None, None, None)
    assert load_tls(GrpcTarget("127.0.0.1:50151", ""), TlsOptions()) is None


@pytest.mark.parametrize(
    "target", [GrpcTarget("127.0.0.1:50151", "liveness"), HttpTarget("https://gateway/readyz")], ids=["grpc", "https"]
)
def test_tls_options_for_a_target_that_is_not_grpcs_are_refused(target: GrpcTarget | HttpTarget) -> None:
    with pytest.raises(BadTls, match="grpcs:// targets only"):
        load_tls(target, TlsOptions(server_name="customer"))


def test_a_client_certificate_without_its_key_is_refused(pem_files: dict[str, Path]) -> None:
    target = GrpcTarget("127.0.0.1:50151", "liveness", tls=True)
    with pytest.raises(BadTls, match="--tls-cert-file and --tls-key-file go together"):
        load_tls(target, TlsOptions(cert_file=pem_files["tls.crt"]))
    with pytest.raises(BadTls, match="--tls-cert-file and --tls-key-file go together"):
        load_tls(target, TlsOptions(key_file=pem_files["tls.key"]))


def test_a_missing_tls_file_is_named_with_the_option_that_gave_it(
    pem_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "absent" / "ca.crt"
    argv = [
        "grpcs://127.0.0.1:1/liveness",
        f"--tls-ca-file={missing}",
        f"--tls-cert-file={pem_files['tls.crt']}",
        f"--tls-key-file={pem_files['tls.key']}",
    ]
    # Exit 1 before dialling anything: port 1 would otherwise answer UNAVAILABLE.
    assert main(argv, env={}) == 1
    assert capsys.readouterr().err == (
        f"loanbook-healthcheck: {missing} (--tls-ca-file or $LOANBOOK_HEALTHCHECK_TLS_CA_FILE): "
        "No such file or directory\n"
    )


def test_tls_options_default_to_the_environment_and_flags_win(tmp_path: Path) -> None:
    env = {
        "LOANBOOK_HEALTHCHECK_TARGET": "grpcs://127.0.0.1:50151/",
        "LOANBOOK_HEALTHCHECK_TLS_CA_FILE": "/etc/loanbook/tls/ca.crt",
        "LOANBOOK_HEALTHCHECK_TLS_CERT_FILE": "/etc/loanbook/tls/tls.crt",
        "LOANBOOK_HEALTHCHECK_TLS_KEY_FILE": "/etc/loanbook/tls/tls.key",
        "LOANBOOK_HEALTHCHECK_TLS_SERVER_NAME": "customer",
    }
    args = build_parser(env).parse_args([])
    assert (args.target, args.tls_ca_file, args.tls_cert_file, args.tls_key_file, args.tls_server_name) == (
        "grpcs://127.0.0.1:50151/",
        Path("/etc/loanbook/tls/ca.crt"),
        Path("/etc/loanbook/tls/tls.crt"),
        Path("/etc/loanbook/tls/tls.key"),
        "customer",
    )
    args = build_parser(env).parse_args([f"--tls-ca-file={tmp_path / 'ca.crt'}", "--tls-server-name=payment"])
    assert (args.tls_ca_file, args.tls_server_name) == (tmp_path / "ca.crt", "payment")
    unset = build_parser({}).parse_args([])
    assert (unset.tls_ca_file, unset.tls_cert_file, unset.tls_key_file, unset.tls_server_name) == (None,) * 4


def test_tls_options_with_a_plaintext_target_are_unhealthy_and_say_why(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"LOANBOOK_HEALTHCHECK_TARGET": "grpc://127.0.0.1:1/", "LOANBOOK_HEALTHCHECK_TLS_SERVER_NAME": "customer"}
    assert main([], env=env) == 1
    assert "apply to grpcs:// targets only" in capsys.readouterr().err
