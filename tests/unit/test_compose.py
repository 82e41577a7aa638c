"""deploy/compose.yaml starts every loanbook process with settings its real settings class accepts, and wires the
stores, health, secrets and telemetry the way the processes and deploy/prometheus, deploy/grafana expect."""

from __future__ import annotations

import os
import re
import secrets
import zipfile
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from pydantic_settings import BaseSettings

from chassis.config import load_settings
from chassis.healthcheck import GrpcTarget, HttpTarget, parse_target
from devstack.tools import find_dynamodb_local_jar
from gateway.config import GatewaySettings
from services.customer.config import CustomerSettings
from services.logging.config import LoggingSettings
from services.payment.config import PaymentSettings
from toolkit.cli import app as toolkit_app
from toolkit.config import ToolkitSettings
from toolkit.telemetry import ToolkitTelemetrySettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"

# The compose service of each loanbook process and the settings classes it reads.
PROCESSES: dict[str, tuple[type[BaseSettings], ...]] = {
    "customer": (CustomerSettings,),
    "payment": (PaymentSettings,),
    "logging": (LoggingSettings,),
    "gateway": (GatewaySettings,),
    "schema": (ToolkitSettings, ToolkitTelemetrySettings),
    "toolkit": (ToolkitSettings, ToolkitTelemetrySettings),
}
GRPC_SERVICES = ("customer", "payment", "logging")
# Read by every process, not by one settings class: the secrets folder, and the container's health probe.
SHARED_VARIABLES = {"LOANBOOK_SECRETS_DIR", "LOANBOOK_HEALTHCHECK_TARGET"}
# What whoever runs compose must provide (deploy/.env): the required ${VAR:?...} and the secrets' sources.
PROVIDED = {
    "POSTGRES_PASSWORD": secrets.token_hex(24),
    "LOANBOOK_GATEWAY_JWT_SECRET": secrets.token_hex(32),
    "LOANBOOK_CUSTOMER_PAGE_TOKEN_SECRET": secrets.token_hex(32),
    "LOANBOOK_PAYMENT_PAGE_TOKEN_SECRET": secrets.token_hex(32),
    "LOANBOOK_LOGGING_PAGE_TOKEN_SECRET": secrets.token_hex(32),
    "GRAFANA_ADMIN_PASSWORD": secrets.token_hex(16),
}
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}."""

    def value(match: re.Match[str]) -> str:
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        present = name in env and (env[name] != "" or op in ("-", "?"))
        if present:
            return env[name]
        if op in (":?", "?"):
            raise AssertionError(f"compose refuses to start: {arg}")
        assert op in (":-", "-"), f"${{{name}}} has no default and no required-message: compose would use ''"
        return arg

    return VARIABLE.sub(value, text.replace("$$", "\0")).replace("\0", "$")


def interpolated(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {key: interpolated(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolated(value, env) for value in node]
    return node


@cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = interpolated(yaml.safe_load(COMPOSE.read_text()), PROVIDED)
    return loaded


def service(name: str) -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"][name]
    return found


def environment(name: str) -> dict[str, str]:
    env = service(name).get("environment", {})
    assert isinstance(env, dict), f"{name}: environment as a mapping"
    return {key: str(value) for key, value in env.items()}


def mounted_secrets(name: str) -> dict[str, str]:
    """The service's secrets: file name in /run/secrets -> top-level secret."""
    found = {}
    for entry in service(name).get("secrets") or []:
        source, target = (entry, entry) if isinstance(entry, str) else (entry["source"], entry.get("target"))
        found[target or source] = source
    return found


def prefix_of(settings_type: type[BaseSettings]) -> str:
    return str(settings_type.model_config.get("env_prefix", ""))


def known_variables(name: str) -> set[str]:
    """Every variable the process reads: its settings classes' fields, and for the toolkit its options' envvars."""
    known = {f"{prefix_of(cls)}{field}".upper() for cls in PROCESSES[name] for field in cls.model_fields}
    if name in ("schema", "toolkit"):
        known |= set(option_envvars(typer.main.get_command(toolkit_app)))
    return known


def option_envvars(command: Any) -> list[str]:
    """The environment variables of a (Typer's) click command's options, its subcommands' included."""
    found = [
        envvar
        for parameter in command.params
        for envvar in ([parameter.envvar] if isinstance(parameter.envvar, str) else parameter.envvar or [])
    ]
    for sub in getattr(command, "commands", {}).values():
        found += option_envvars(sub)
    return found


# --- the settings of each process -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_each_process_builds_its_settings_from_the_compose_environment_and_secrets(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in list(os.environ):
        if variable.startswith(("LOANBOOK_", "OTEL_")):
            monkeypatch.delenv(variable)
    env = environment(name)
    assert env["LOANBOOK_SECRETS_DIR"] == "/run/secrets"
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    # The secrets as compose mounts them (/run/secrets/<target>), with the values compose is given.
    secret_sources = compose()["secrets"]
    for target, source in mounted_secrets(name).items():
        (tmp_path / target).write_text(PROVIDED[secret_sources[source]["environment"]] + "\n")
    monkeypatch.setenv("LOANBOOK_SECRETS_DIR", str(tmp_path))

    for settings_type in PROCESSES[name]:
        settings = load_settings(settings_type)  # raises, naming the variable, on anything missing or invalid
        if hasattr(settings, "environment") and name != "toolkit":
            assert settings.environment.value == "production", f"{name} runs with production settings"


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_every_loanbook_variable_in_compose_is_a_setting_of_that_process(name: str) -> None:
    named = {variable for variable in environment(name) if variable.startswith("LOANBOOK_")}
    named |= {target for target in mounted_secrets(name) if target.startswith("LOANBOOK_")}
    unknown = named - known_variables(name) - SHARED_VARIABLES
    assert unknown == set(), f"{name}: no setting reads {sorted(unknown)} (a typo?)"


def test_secrets_are_files_never_environment_values() -> None:
    for name in PROCESSES:
        env = environment(name)
        for variable in env:
            assert not variable.endswith(("_SECRET", "_PASSWORD")), f"{name}: {variable} belongs in secrets:"
        for target in mounted_secrets(name):
            assert "/" not in target, f"{name}: {target} must land in /run/secrets (LOANBOOK_SECRETS_DIR)"


def test_each_grpc_service_has_one_page_token_secret_shared_by_its_replicas() -> None:
    sources = compose()["secrets"]
    used = []
    for name in GRPC_SERVICES:
        (source,) = [s for t, s in mounted_secrets(name).items() if t.endswith("_PAGE_TOKEN_SECRET")]
        assert "environment" in sources[source] or "file" in sources[source], "one value, not generated per replica"
        used.append(source)
    assert len(set(used)) == len(GRPC_SERVICES), "each service signs its own page tokens"


def test_required_variables_are_refused_with_a_message_when_missing() -> None:
    raw = yaml.safe_load(COMPOSE.read_text())
    with pytest.raises(AssertionError, match="set POSTGRES_PASSWORD"):
        interpolated(raw, {key: value for key, value in PROVIDED.items() if key != "POSTGRES_PASSWORD"})


def grpc_port(name: str) -> str:
    """The gRPC port the service listens on in compose: its own setting, else the settings class's default."""
    (settings_type,) = PROCESSES[name]
    default = settings_type.model_fields["grpc_port"].default
    return environment(name).get(f"{prefix_of(settings_type)}GRPC_PORT") or str(default)


def test_the_processes_find_each_other_at_the_compose_service_addresses() -> None:
    assert environment("payment")["LOANBOOK_PAYMENT_CUSTOMER_ADDR"] == f"customer:{grpc_port('customer')}"
    for peer in GRPC_SERVICES:
        assert environment("gateway")[f"LOANBOOK_GATEWAY_{peer.upper()}_ADDR"] == f"{peer}:{grpc_port(peer)}"
    for shipper in ("customer", "payment"):  # as `make up` (devstack loanbook_apps) ships their logs
        expected = f"logging:{grpc_port('logging')}"
        assert environment(shipper)[f"LOANBOOK_{shipper.upper()}_LOG_SHIPPING_ADDR"] == expected
    assert environment("gateway")["LOANBOOK_GATEWAY_SHIP_OWN_LOGS"] == "true"


def test_the_payment_service_reads_the_migration_settings_file_mounted_where_its_setting_points() -> None:
    (mount,) = service("payment")["configs"]
    assert environment("payment")["LOANBOOK_PAYMENT_MIGRATION_SETTINGS_FILE"] == mount["target"]
    assert (DEPLOY / compose()["configs"][mount["source"]]["file"]).is_file()


# --- health and start-up order --------------------------------------------------------------------------------------


def test_every_long_running_container_has_a_healthcheck_and_jobs_none() -> None:
    for name, definition in compose()["services"].items():
        check = definition.get("healthcheck", {})
        if name in ("schema", "toolkit"):
            assert check.get("disable") is True, f"{name} is a command: nothing to probe"
            continue
        assert not check.get("disable"), name
        if name in PROCESSES:  # the image's HEALTHCHECK, aimed by LOANBOOK_HEALTHCHECK_TARGET
            assert "test" not in check, f"{name}: the image's loanbook-healthcheck is the probe"
            assert "LOANBOOK_HEALTHCHECK_TARGET" in environment(name)
        else:
            assert check.get("test"), f"{name} has no healthcheck"


@pytest.mark.parametrize("name", GRPC_SERVICES)
def test_a_service_healthcheck_asks_its_own_grpc_port_for_readiness(name: str) -> None:
    target = parse_target(environment(name)["LOANBOOK_HEALTHCHECK_TARGET"])
    assert target == GrpcTarget(f"127.0.0.1:{grpc_port(name)}", "")


def test_the_gateway_healthcheck_asks_its_own_port_for_readiness() -> None:
    port = environment("gateway").get("LOANBOOK_GATEWAY_HTTP_PORT") or GatewaySettings.model_fields["http_port"].default
    assert parse_target(environment("gateway")["LOANBOOK_HEALTHCHECK_TARGET"]) == HttpTarget(
        f"http://127.0.0.1:{port}/readyz"
    )


def test_every_dependency_waits_for_health_or_completion() -> None:
    services = compose()["services"]
    for name, definition in services.items():
        for dependency, condition in definition.get("depends_on", {}).items():
            if dependency == "schema":
                assert condition == {"condition": "service_completed_successfully"}, name
            else:
                assert condition == {"condition": "service_healthy"}, f"{name} -> {dependency}"
                assert not services[dependency].get("healthcheck", {}).get("disable"), dependency
    for name in GRPC_SERVICES:
        assert environment(name)[f"LOANBOOK_{name.upper()}_MIGRATE_ON_START"] == "false"
        assert "schema" in service(name)["depends_on"]
    assert service("schema")["command"] == ["loanbook", "schema", "upgrade"]


def test_dynamodb_local_is_the_version_dev_and_tests_run() -> None:
    jar = find_dynamodb_local_jar(ROOT).jar
    with zipfile.ZipFile(jar) as archive:
        pom = archive.read("META-INF/maven/software/amazon/dynamodb/DynamoDBLocal/pom.properties").decode()
    (version,) = re.findall(r"^version=(\S+)$", pom, re.MULTILINE)
    assert service("dynamodb")["image"] == f"amazon/dynamodb-local:{version}"


# --- telemetry ------------------------------------------------------------------------------------------------------


def test_every_process_sends_traces_to_jaeger_over_otlp() -> None:
    jaeger = "http://jaeger:4317"
    assert "jaeger" in compose()["services"]
    for name in PROCESSES:
        env = environment(name)
        assert env["OTEL_TRACES_EXPORTER"] == "otlp", name
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == jaeger, name
        assert env["OTEL_SERVICE_NAME"] == f"loanbook-{'toolkit' if name == 'schema' else name}", name


def test_prometheus_scrapes_every_process_at_its_metrics_port_under_the_rules_job_names() -> None:
    prometheus = service("prometheus")
    config_file = next(arg for arg in prometheus["command"] if arg.startswith("--config.file="))
    mounts = dict(volume.split(":")[:2] for volume in prometheus["volumes"] if volume.startswith("./"))
    (host_folder,) = [folder for folder, target in mounts.items() if config_file.split("=", 1)[1].startswith(target)]
    path = DEPLOY / host_folder / Path(config_file.split("=", 1)[1]).name
    config = yaml.safe_load(path.read_text())
    scraped = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    reference = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert set(scraped) == {job["job_name"] for job in reference["scrape_configs"]}
    assert config["rule_files"] == reference["rule_files"]
    for name in ("customer", "payment", "logging", "gateway", "toolkit"):
        prefix = "LOANBOOK_MIGRATION_" if name == "toolkit" else f"LOANBOOK_{name.upper()}_"
        assert scraped[f"loanbook-{name}"] == [f"{name}:{environment(name)[prefix + 'METRICS_PORT']}"]


def test_grafana_is_provisioned_with_the_compose_prometheus_and_the_dashboards() -> None:
    grafana = service("grafana")
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"] if volume.startswith("./"))
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/loanbook.yml").read_text())["providers"][0]
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    (datasource,) = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["url"] == "http://prometheus:9090"
    assert any(port.endswith(":9090") for port in service("prometheus")["ports"])
