"""Settings load from prefixed environment variables and fail with the variable's name."""

from pathlib import Path

import pytest

from chassis.config import ConfigurationError, TlsSettings, load_settings
from gateway.config import GatewaySettings
from services.customer.config import CustomerSettings
from services.payment.config import PaymentSettings


def test_reads_settings_from_the_service_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOANBOOK_CUSTOMER_GRPC_PORT", "6001")
    monkeypatch.setenv("LOANBOOK_CUSTOMER_POSTGRES_DSN", "postgresql://u:p@127.0.0.1:1/db")
    monkeypatch.setenv("LOANBOOK_PAYMENT_GRPC_PORT", "6002")

    settings = load_settings(CustomerSettings)

    assert settings.grpc_port == 6001
    assert settings.postgres_dsn.get_secret_value() == "postgresql://u:p@127.0.0.1:1/db"


def test_a_bad_value_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOANBOOK_CUSTOMER_GRPC_PORT", "70000")
    monkeypatch.setenv("LOANBOOK_CUSTOMER_POSTGRES_DSN", "postgresql://u:p@127.0.0.1:1/db")

    with pytest.raises(ConfigurationError, match="LOANBOOK_CUSTOMER_GRPC_PORT: Input should be less than or equal"):
        load_settings(CustomerSettings)


def test_a_missing_required_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOANBOOK_PAYMENT_CUSTOMER_ADDR", raising=False)
    monkeypatch.setenv("LOANBOOK_PAYMENT_POSTGRES_DSN", "postgresql://u:p@127.0.0.1:1/db")

    with pytest.raises(ConfigurationError) as raised:
        load_settings(PaymentSettings)

    assert "LOANBOOK_PAYMENT_CUSTOMER_ADDR: Field required" in str(raised.value)


def test_secrets_are_not_echoed_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOANBOOK_CUSTOMER_POSTGRES_DSN", "postgresql://u:hunter2@127.0.0.1:1/db")
    monkeypatch.setenv("LOANBOOK_CUSTOMER_SHUTDOWN_GRACE_SECONDS", "-1")

    with pytest.raises(ConfigurationError) as raised:
        load_settings(CustomerSettings)

    assert "SHUTDOWN_GRACE_SECONDS" in str(raised.value)
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize("dsn", ["loanbook:hunter2@127.0.0.1/db", "mysql://u:hunter2@127.0.0.1/db", "hunter2"])
def test_a_dsn_that_is_no_postgresql_url_is_named_without_echoing_it(monkeypatch: pytest.MonkeyPatch, dsn: str) -> None:
    monkeypatch.setenv("LOANBOOK_CUSTOMER_POSTGRES_DSN", dsn)

    with pytest.raises(ConfigurationError) as raised:
        load_settings(CustomerSettings)

    assert "LOANBOOK_CUSTOMER_POSTGRES_DSN: Value error, must be a postgresql:// URL" in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_gateway_requires_every_downstream_address(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CUSTOMER", "PAYMENT", "LOGGING"):
        monkeypatch.delenv(f"LOANBOOK_GATEWAY_{name}_ADDR", raising=False)

    with pytest.raises(ConfigurationError) as raised:
        load_settings(GatewaySettings)

    for name in ("CUSTOMER", "PAYMENT", "LOGGING"):
        assert f"LOANBOOK_GATEWAY_{name}_ADDR" in str(raised.value)


def test_tls_certificate_without_key_is_refused(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")

    with pytest.raises(ValueError, match="must be set together"):
        TlsSettings(tls_cert_file=cert)


def test_tls_file_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        TlsSettings(tls_ca_file=tmp_path / "missing.pem")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LOANBOOK_PAYMENT_RELAY_HEAD_START_SECONDS", "-1"),
        ("LOANBOOK_PAYMENT_RELAY_HEAD_START_SECONDS", "61"),
        ("LOANBOOK_PAYMENT_BACKGROUND_COPY_LIMIT", "10001"),
        ("LOANBOOK_PAYMENT_AWAIT_DYNAMODB_COPY", "sometimes"),
    ],
)
def test_copy_settings_out_of_bounds_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv("LOANBOOK_PAYMENT_POSTGRES_DSN", "postgresql://u:p@127.0.0.1:1/db")
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigurationError, match=f"{variable}: "):
        load_settings(PaymentSettings)
