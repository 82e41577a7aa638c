"""LOANBOOK_SECRETS_DIR: settings read from files named after their variables, the environment still first."""

from pathlib import Path

import pytest

from chassis.config import ConfigurationError, load_settings
from gateway.config import GatewaySettings
from services.customer.config import CustomerSettings

STRONG = "k3p9-Zq7vXw2Lr8tYb5Nm1Hc4Jd6Fg0SaUe"  # 36 characters, no placeholder


@pytest.fixture
def gateway_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CUSTOMER", "PAYMENT", "LOGGING"):
        monkeypatch.setenv(f"LOANBOOK_GATEWAY_{name}_ADDR", "127.0.0.1:1")
    monkeypatch.setenv("LOANBOOK_GATEWAY_ENVIRONMENT", "production")
    monkeypatch.delenv("LOANBOOK_GATEWAY_JWT_SECRET", raising=False)
    monkeypatch.delenv("LOANBOOK_GATEWAY_JWT_JWKS_URL", raising=False)


def secrets_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **files: str) -> Path:
    folder = tmp_path / "secrets"
    folder.mkdir()
    for name, value in files.items():
        (folder / name).write_text(value)
    monkeypatch.setenv("LOANBOOK_SECRETS_DIR", str(folder))
    return folder


@pytest.mark.usefixtures("gateway_env")
def test_a_secret_is_read_from_the_file_named_after_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets_folder(tmp_path, monkeypatch, LOANBOOK_GATEWAY_JWT_SECRET=STRONG + "\n")

    settings = load_settings(GatewaySettings)

    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == STRONG  # the file's trailing newline is not part of it


@pytest.mark.usefixtures("gateway_env")
def test_the_environment_wins_over_a_secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets_folder(tmp_path, monkeypatch, LOANBOOK_GATEWAY_JWT_SECRET=STRONG)
    monkeypatch.setenv("LOANBOOK_GATEWAY_JWT_SECRET", STRONG[::-1])

    settings = load_settings(GatewaySettings)

    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == STRONG[::-1]


@pytest.mark.usefixtures("gateway_env")
def test_a_missing_secret_is_named_with_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets_folder(tmp_path, monkeypatch, LOANBOOK_GATEWAY_JWT_SECRETS=STRONG)  # a typo'd file name: not read

    with pytest.raises(ConfigurationError, match="LOANBOOK_GATEWAY_JWT_SECRET"):
        load_settings(GatewaySettings)


def test_a_missing_required_setting_names_the_variable_and_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOANBOOK_CUSTOMER_POSTGRES_DSN", raising=False)
    folder = secrets_folder(tmp_path, monkeypatch)

    with pytest.raises(ConfigurationError) as raised:
        load_settings(CustomerSettings)

    assert f"LOANBOOK_CUSTOMER_POSTGRES_DSN: Field required (neither in the environment nor a file in {folder})" in str(
        raised.value
    )


def test_a_weak_secret_from_a_file_is_refused_without_echoing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOANBOOK_CUSTOMER_ENVIRONMENT", "production")
    monkeypatch.setenv("LOANBOOK_CUSTOMER_POSTGRES_DSN", "postgresql://u:p@127.0.0.1:1/db")
    secrets_folder(tmp_path, monkeypatch, LOANBOOK_CUSTOMER_PAGE_TOKEN_SECRET="short-hunter2")

    with pytest.raises(ConfigurationError, match="page_token_secret of at least 32 characters") as raised:
        load_settings(CustomerSettings)

    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_a_secrets_dir_that_is_no_folder_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    path = tmp_path / "run-secrets"
    if kind == "a file":
        path.write_text("")
    monkeypatch.setenv("LOANBOOK_SECRETS_DIR", str(path))
    monkeypatch.setenv("LOANBOOK_CUSTOMER_POSTGRES_DSN", "postgresql://u:p@127.0.0.1:1/db")

    with pytest.raises(ConfigurationError, match=f"LOANBOOK_SECRETS_DIR: {path} is not a folder"):
        load_settings(CustomerSettings)


def test_the_operator_commands_name_the_secrets_folder_a_missing_setting_was_looked_for_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from toolkit.cli import app

    monkeypatch.delenv("LOANBOOK_MIGRATION_POSTGRES_DSN", raising=False)
    monkeypatch.setenv("LOANBOOK_SECRETS_DIR", str(tmp_path))

    result = CliRunner().invoke(app, ["migrate", "status"])

    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert "LOANBOOK_MIGRATION_POSTGRES_DSN (or --postgres-dsn): Field required" in said
    assert f"(neither in the environment nor a file in {tmp_path})" in said
