"""The Kubernetes manifests as kubectl would apply them: probes, limits, policies, Jobs and settings that exist."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from chassis.healthcheck import GrpcTarget, HttpTarget, build_parser, parse_target
from gateway.config import GatewaySettings
from services.customer.config import CustomerSettings
from services.logging.config import LoggingSettings
from services.payment.config import PaymentSettings
from tests.unit.test_image import image_user, scripts
from toolkit.config import ToolkitSettings
from toolkit.telemetry import ToolkitTelemetrySettings

KUBERNETES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
OVERLAYS = ("local", "production")
PROCESSES = ("customer", "payment", "logging", "gateway")
NAMESPACE = "loanbook"

# Each pod's settings classes, by its app.kubernetes.io/name label.
SETTINGS: dict[str, tuple[type[BaseSettings], ...]] = {
    "customer": (CustomerSettings,),
    "payment": (PaymentSettings,),
    "logging": (LoggingSettings,),
    "gateway": (GatewaySettings,),
    "migration": (ToolkitSettings, ToolkitTelemetrySettings),
}

GRPC_PORTS = {"customer": 50151, "payment": 50152, "logging": 50153}
# Who may call whom: the gateway calls every service; payment asks customer about loans; every process that ships
# its own logs (customer, payment, gateway: devstack/cli.py loanbook_apps) reaches logging.
CALLERS = {
    "customer": {"gateway", "payment"},
    "payment": {"gateway"},
    "logging": {"gateway", "customer", "payment"},
}

Manifest = dict[str, Any]


@cache
def render(kustomization: str) -> tuple[Manifest, ...]:
    """`kubectl kustomize` of a directory under deploy/kubernetes, one dict per resource."""
    result = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES / kustomization)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{kustomization} does not render: {result.stderr}"
    return tuple(document for document in yaml.safe_load_all(result.stdout) if document)


def of_kind(manifests: tuple[Manifest, ...], kind: str) -> list[Manifest]:
    return [manifest for manifest in manifests if manifest["kind"] == kind]


def named(manifests: tuple[Manifest, ...], kind: str, name: str) -> Manifest:
    found = [manifest for manifest in of_kind(manifests, kind) if manifest["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def deployments(overlay: str) -> dict[str, Manifest]:
    """loanbook's own Deployments (not the local overlay's stores), by process."""
    return {
        manifest["metadata"]["name"]: manifest
        for manifest in of_kind(render(f"overlays/{overlay}"), "Deployment")
        if manifest["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "loanbook"
    }


def pod_spec(workload: Manifest) -> Manifest:
    spec: Manifest = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: Manifest) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) applied to a set of labels."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        matched = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not matched:
            return False
    return True


# --- every process is probed, limited, locked down, budgeted, scaled and reachable ---------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_process_has_probes_resources_security_context_budget_autoscaler_and_service(overlay: str) -> None:
    manifests = render(f"overlays/{overlay}")
    found = deployments(overlay)
    assert set(found) == set(PROCESSES)
    for name, deployment in found.items():
        spec, labels = pod_spec(deployment), pod_labels(deployment)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] > 0, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["serviceAccountName"] == f"loanbook-{name}", name
        named(manifests, "ServiceAccount", f"loanbook-{name}")
        for container in spec["containers"]:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert probe in container, f"{name}: no {probe}"
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) >= {"cpu", "memory"}, f"{name}: {bound}"
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name

        budgets = [pdb for pdb in of_kind(manifests, "PodDisruptionBudget") if selects(pdb["spec"]["selector"], labels)]
        assert len(budgets) == 1, f"{name}: {len(budgets)} disruption budgets"
        scalers = [
            hpa
            for hpa in of_kind(manifests, "HorizontalPodAutoscaler")
            if hpa["apiVersion"] == "autoscaling/v2" and hpa["spec"]["scaleTargetRef"] == {
                "apiVersion": "apps/v1", "kind": "Deployment", "name": name
            }
        ]  # fmt: skip
        assert len(scalers) == 1, f"{name}: {len(scalers)} autoscalers"
        ports = {port["name"]: port["containerPort"] for port in spec["containers"][0]["ports"]}
        services = [
            svc for svc in of_kind(manifests, "Service") if selects({"matchLabels": svc["spec"]["selector"]}, labels)
        ]
        assert len(services) == 1, f"{name}: {len(services)} Services"
        assert services[0]["metadata"]["name"] == name, "peers dial the Service by the process's name"
        for port in services[0]["spec"]["ports"]:
            assert port["targetPort"] in ports, f"{name}: Service port {port['name']} targets no container port"


def loanbook_workloads(overlay: str) -> list[Manifest]:
    """Every workload running the loanbook image: the Deployments and the Jobs."""
    return [*deployments(overlay).values(), *of_kind(render(f"overlays/{overlay}/jobs"), "Job")]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_as_the_images_user_and_group(overlay: str) -> None:
    uid, gid = image_user()
    workloads = loanbook_workloads(overlay)
    assert {pod_labels(workload)["app.kubernetes.io/name"] for workload in workloads} == {*PROCESSES, "migration"}
    for workload in workloads:
        name = workload["metadata"]["name"]
        context = pod_spec(workload)["securityContext"]
        # Any other user owns no home directory in the image, and another group than fsGroup's cannot read
        # group-only mounted files.
        assert (context["runAsUser"], context["runAsGroup"]) == (int(uid), int(gid)), name
        assert context.get("fsGroup", int(gid)) == int(gid), name
        for container in pod_spec(workload)["containers"]:
            own = container.get("securityContext", {})
            assert own.get("runAsUser", int(uid)) == int(uid), f"{name} {container['name']}"
            assert own.get("runAsGroup", int(gid)) == int(gid), f"{name} {container['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_mounted_secret_files_are_readable_by_the_pods_user(overlay: str) -> None:
    checked = 0
    for workload in loanbook_workloads(overlay):
        spec = pod_spec(workload)
        context = spec["securityContext"]
        for volume in spec.get("volumes", []):
            if "secret" not in volume:
                continue
            checked += 1
            secret = volume["secret"]
            modes = [item["mode"] for item in secret.get("items", []) if "mode" in item] or [
                secret.get("defaultMode", 0o644)
            ]
            for mode in modes:
                # The kubelet writes them as root; with an fsGroup it hands their group to that group, which the
                # pod's user is a member of. Owner bits never apply to a non-root user.
                readable = bool(mode & 0o004) or (bool(mode & 0o040) and "fsGroup" in context)
                assert readable, f"{workload['metadata']['name']}: volume {volume['name']} mode {mode:o}"
    assert checked == (4 if overlay == "production" else 0), "production mounts each process's TLS Secret"


@dataclass(frozen=True)
class Health:
    """What a probe asks: a gRPC health service name on a port, or an HTTP path."""

    port: int | str
    asks: str


def health_of(probe: Manifest) -> Health:
    if "grpc" in probe:
        return Health(probe["grpc"]["port"], probe["grpc"].get("service", ""))
    if "httpGet" in probe:
        return Health(probe["httpGet"]["port"], probe["httpGet"]["path"])
    # Production's TLS probe: loanbook-healthcheck grpcs://127.0.0.1:PORT/SERVICE ..., read as it reads it.
    target = healthcheck_target(probe["exec"]["command"])
    assert isinstance(target, GrpcTarget)
    return Health(int(target.address.rpartition(":")[2]), target.service)


def healthcheck_target(command: list[str]) -> GrpcTarget | HttpTarget:
    assert command[0] == "loanbook-healthcheck", command
    return parse_target(build_parser({}).parse_args(command[1:]).target)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_are_probed_on_liveness_and_on_overall_health_and_the_gateway_on_livez_and_readyz(
    overlay: str,
) -> None:
    for name, deployment in deployments(overlay).items():
        container = pod_spec(deployment)["containers"][0]
        probes = {kind: health_of(container[kind]) for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
        if name == "gateway":
            expected = {"startupProbe": "/livez", "livenessProbe": "/livez", "readinessProbe": "/readyz"}
            assert {kind: health.port for kind, health in probes.items()} == dict.fromkeys(expected, "http")
        else:
            # "liveness" stays SERVING while the process runs; "" reports whether the stores it needs answer.
            expected = {"startupProbe": "liveness", "livenessProbe": "liveness", "readinessProbe": ""}
            assert {health.port for health in probes.values()} == {GRPC_PORTS[name]}
        assert {kind: health.asks for kind, health in probes.items()} == expected, name


def test_production_probes_the_tls_services_with_the_images_healthcheck_over_mutual_tls() -> None:
    config = {process: environment for process, _, environment in environments("production")}
    for name, port in GRPC_PORTS.items():
        container = pod_spec(deployments("production")[name])["containers"][0]
        server = config[name]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = container[kind]
            # The kubelet's gRPC probe speaks plaintext only; a TLS server refuses it.
            assert "grpc" not in probe, f"{name} {kind}"
            command = probe["exec"]["command"]
            assert command[0] in scripts(), "a console script the image installs"
            args = build_parser({}).parse_args(command[1:])
            target = parse_target(args.target)
            # The pod itself, on loopback: through the Service the probe could reach another replica.
            assert isinstance(target, GrpcTarget), f"{name} {kind}"
            assert target == GrpcTarget(f"127.0.0.1:{port}", target.service, tls=True), f"{name} {kind}"
            # The server's own files (what it serves and dials with), and the name its certificate carries: the
            # Service name peers dial.
            prefix = f"LOANBOOK_{name.upper()}_"
            files = (args.tls_ca_file, args.tls_cert_file, args.tls_key_file)
            expected = tuple(
                Path(server[f"{prefix}{setting}"]) for setting in ("TLS_CA_FILE", "TLS_CERT_FILE", "TLS_KEY_FILE")
            )
            assert files == expected, f"{name} {kind}"
            assert args.tls_server_name == name, f"{name} {kind}"
            # Its own deadline first, so a slow server is reported as such rather than killed by the kubelet.
            assert args.timeout < probe["timeoutSeconds"], f"{name} {kind}"


# --- network policies ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pod:
    name: str
    labels: Mapping[str, str]
    namespace: str = NAMESPACE
    ports: Mapping[str, int] | None = None


def namespace_labels(namespace: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": namespace}


def peer_matches(peer: Manifest, pod: Pod, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        return True  # an address range: anything, as far as pods are concerned
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], namespace_labels(pod.namespace)):
            return False
    elif pod.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector", {}), pod.labels)


def port_matches(rule: Manifest, port: int, protocol: str, destination: Pod) -> bool:
    if "ports" not in rule:
        return True
    for allowed in rule["ports"]:
        if allowed.get("protocol", "TCP") != protocol:
            continue
        number = allowed.get("port")
        if isinstance(number, str):  # a named port of the destination pod
            number = (destination.ports or {}).get(number)
        if number is None or number == port:
            return True
    return False


def allows(policies: list[Manifest], direction: str, source: Pod, destination: Pod, port: int, protocol: str) -> bool:
    """Whether the policies of one side (the destination's Ingress or the source's Egress) let a connection from
    `source` to `destination`'s port through; a pod no policy isolates in that direction allows everything."""
    subject, other, peers_key = (destination, source, "from") if direction == "Ingress" else (source, destination, "to")
    isolating = [
        policy
        for policy in policies
        if policy["metadata"]["namespace"] == subject.namespace
        and direction in policy["spec"].get("policyTypes", [])
        and selects(policy["spec"]["podSelector"], subject.labels)
    ]
    rules = [rule for policy in isolating for rule in policy["spec"].get(direction.lower(), [])]
    return not isolating or any(
        port_matches(rule, port, protocol, destination)
        # No `from`/`to`: any peer.
        and (peers_key not in rule or any(peer_matches(peer, other, subject.namespace) for peer in rule[peers_key]))
        for rule in rules
    )


def admitted(policies: list[Manifest], source: Pod, destination: Pod, port: int, protocol: str = "TCP") -> bool:
    """Whether `source` can open a connection to `destination`'s port: the ingress and the egress side agree."""
    return allows(policies, "Ingress", source, destination, port, protocol) and allows(
        policies, "Egress", source, destination, port, protocol
    )


def pods(overlay: str) -> dict[str, Pod]:
    """loanbook's pods, a migration Job's, and pods that must be kept out: a stranger in the namespace, an outsider
    elsewhere, and Prometheus where the policies expect it."""
    found = {
        name: Pod(
            name,
            pod_labels(deployment),
            ports={port["name"]: port["containerPort"] for port in pod_spec(deployment)["containers"][0]["ports"]},
        )
        for name, deployment in deployments(overlay).items()
    }
    backfill = named(render(f"overlays/{overlay}/jobs"), "Job", "loanbook-backfill-payments")
    found["migration"] = Pod("migration", pod_labels(backfill))
    found["stranger"] = Pod("stranger", {"app.kubernetes.io/name": "debug-shell"})
    found["outsider"] = Pod("outsider", {"app.kubernetes.io/name": "payment"}, namespace="elsewhere")
    found["prometheus"] = Pod("prometheus", {"app.kubernetes.io/name": "prometheus"}, namespace="monitoring")
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_admit_exactly_the_callers_of_each_service(overlay: str) -> None:
    policies = of_kind(render(f"overlays/{overlay}"), "NetworkPolicy")
    everyone = pods(overlay)
    for service, port in GRPC_PORTS.items():
        target = everyone[service]
        # Each side on its own, so that neither admits more than the other hides.
        ingress = {name for name, pod in everyone.items() if allows(policies, "Ingress", pod, target, port, "TCP")}
        assert ingress == CALLERS[service], f"{service}: ingress"
        in_namespace = {name: pod for name, pod in everyone.items() if pod.namespace == NAMESPACE}
        egress = {name for name, pod in in_namespace.items() if allows(policies, "Egress", pod, target, port, "TCP")}
        assert egress == CALLERS[service], f"{service}: egress"
    # The public API is open to whatever fronts it, from any namespace; the services' ports are not.
    assert admitted(policies, everyone["outsider"], everyone["gateway"], 58080)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_alone_reaches_the_metrics_ports(overlay: str) -> None:
    policies = of_kind(render(f"overlays/{overlay}"), "NetworkPolicy")
    everyone = pods(overlay)
    for name in PROCESSES:
        target = everyone[name]
        assert target.ports is not None
        scrapers = {
            other for other, pod in everyone.items() if admitted(policies, pod, target, target.ports["metrics"])
        }
        assert scrapers == {"prometheus"}, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_deny_by_default(overlay: str) -> None:
    policies = of_kind(render(f"overlays/{overlay}"), "NetworkPolicy")
    stranger = pods(overlay)["stranger"]
    # A pod no rule names gets nothing in and reaches nothing but DNS.
    assert not admitted(policies, stranger, Pod("other-stranger", {}), 8080)
    kube_dns = Pod("kube-dns", {"k8s-app": "kube-dns"}, namespace="kube-system")
    assert admitted(policies, stranger, kube_dns, 53, "UDP")


# --- settings: every LOANBOOK_* variable is a field of the process's settings --------------------------------------


def setting_names(classes: tuple[type[BaseSettings], ...]) -> set[str]:
    return {
        f"{settings.model_config.get('env_prefix', '')}{field}".upper()
        for settings in classes
        for field in settings.model_fields
    }


def environments(overlay: str) -> Iterator[tuple[str, str, dict[str, str]]]:
    """Each loanbook container (the Jobs' too) as (process, container, its environment from env and ConfigMaps)."""
    application = render(f"overlays/{overlay}")
    for workload in loanbook_workloads(overlay):
        process = pod_labels(workload)["app.kubernetes.io/name"]
        for container in pod_spec(workload)["containers"]:
            environment: dict[str, str] = {}
            for source in container.get("envFrom", []):
                if "configMapRef" in source:  # made by the application overlay, for the Jobs too
                    environment |= named(application, "ConfigMap", source["configMapRef"]["name"])["data"]
            for variable in container.get("env", []):
                environment[variable["name"]] = variable.get("value", "<from a Secret>")
            yield process, container["name"], environment


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_loanbook_variable_is_a_field_of_the_process_settings(overlay: str) -> None:
    seen = set()
    for process, container, environment in environments(overlay):
        seen.add(process)
        known = setting_names(SETTINGS[process])
        unknown = sorted(name for name in environment if name.startswith("LOANBOOK_") and name not in known)
        assert not unknown, f"{overlay} {container}: no such setting: {unknown}"
    assert seen == set(SETTINGS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_services_and_the_toolkit_agree_on_table_names_and_the_log_layout(overlay: str) -> None:
    config = {process: environment for process, _, environment in environments(overlay)}
    prefixes = {
        config["payment"]["LOANBOOK_PAYMENT_DYNAMODB_TABLE_PREFIX"],
        config["logging"]["LOANBOOK_LOGGING_DYNAMODB_TABLE_PREFIX"],
        config["migration"]["LOANBOOK_MIGRATION_DYNAMODB_TABLE_PREFIX"],
    }
    assert len(prefixes) == 1
    logging, migration = config["logging"], config["migration"]
    assert logging["LOANBOOK_LOGGING_DYNAMODB_SHARDS"] == migration["LOANBOOK_MIGRATION_LOG_SHARDS"]
    assert logging["LOANBOOK_LOGGING_RETENTION_DAYS"] == migration["LOANBOOK_MIGRATION_LOG_RETENTION_DAYS"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_leave_schema_migrations_to_the_job_and_listen_beyond_loopback(overlay: str) -> None:
    for process, _, environment in environments(overlay):
        prefix = f"LOANBOOK_{process.upper()}_"
        if process in GRPC_PORTS:
            assert environment[f"{prefix}MIGRATE_ON_START"] == "false", process
            assert environment[f"{prefix}GRPC_HOST"] == "0.0.0.0", process
        if process in PROCESSES:
            assert environment[f"{prefix}METRICS_HOST"] == "0.0.0.0", process


def test_production_runs_as_production_with_tables_managed_as_code_and_mutual_tls() -> None:
    config = {process: environment for process, _, environment in environments("production")}
    for process, environment in config.items():
        assert environment[f"LOANBOOK_{process.upper()}_ENVIRONMENT"] == "production", process
    for process in ("payment", "logging"):
        assert config[process][f"LOANBOOK_{process.upper()}_DYNAMODB_CREATE_TABLES"] == "false", process
        assert f"LOANBOOK_{process.upper()}_DYNAMODB_ENDPOINT" not in config[process], "AWS DynamoDB, not a URL"
    for process in PROCESSES:
        spec = pod_spec(deployments("production")[process])
        mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
        secrets = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
        for setting in ("TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_FILE"):
            path = Path(config[process][f"LOANBOOK_{process.upper()}_{setting}"])
            assert secrets.get(mounts.get(str(path.parent), "")) == f"loanbook-{process}-tls", f"{process} {setting}"


def test_local_runs_in_development_against_in_cluster_stores_that_create_their_tables() -> None:
    manifests = render("overlays/local")
    config = {process: environment for process, _, environment in environments("local")}
    for process, environment in config.items():
        assert environment[f"LOANBOOK_{process.upper()}_ENVIRONMENT"] == "development", process
    for process in ("payment", "logging", "migration"):
        endpoint = config[process][f"LOANBOOK_{process.upper()}_DYNAMODB_ENDPOINT"]
        assert endpoint == "http://dynamodb-local:8000", process
    for process in ("payment", "logging"):
        assert config[process][f"LOANBOOK_{process.upper()}_DYNAMODB_CREATE_TABLES"] == "true", process
    named(manifests, "Service", "dynamodb-local")
    named(manifests, "Service", "postgres")


def test_replica_ranges_one_locally_at_least_two_in_production_spread_over_zones() -> None:
    for overlay, low, high in (("local", 1, 1), ("production", 2, None)):
        for hpa in of_kind(render(f"overlays/{overlay}"), "HorizontalPodAutoscaler"):
            assert hpa["spec"]["minReplicas"] >= low, hpa["metadata"]["name"]
            assert high is None or hpa["spec"]["maxReplicas"] <= high, hpa["metadata"]["name"]
            if high is None:
                assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"], hpa["metadata"]["name"]
    for name, deployment in deployments("production").items():
        keys = {c["topologyKey"] for c in pod_spec(deployment)["topologySpreadConstraints"]}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}, name
    for deployment in [*deployments("local").values(), *deployments("production").values()]:
        assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"


# --- secrets ---------------------------------------------------------------------------------------------------------


def test_secrets_are_references_except_the_local_overlays_obviously_local_values() -> None:
    assert not of_kind(render("base"), "Secret")
    assert not of_kind(render("overlays/production"), "Secret")
    for secret in of_kind(render("overlays/local"), "Secret"):
        for key, value in secret["data"].items():
            assert "local" in base64.b64decode(value).decode(), f"{secret['metadata']['name']}/{key}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_irsa_roles_only_where_aws_is_reached(overlay: str) -> None:
    accounts = {
        account["metadata"]["name"]: account["metadata"].get("annotations", {})
        for account in of_kind(render(f"overlays/{overlay}"), "ServiceAccount")
    }
    with_roles = {name for name, notes in accounts.items() if "eks.amazonaws.com/role-arn" in notes}
    assert with_roles == (
        {"loanbook-payment", "loanbook-logging", "loanbook-migration"} if overlay == "production" else set()
    )


# --- jobs -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_jobs_run_the_schema_upgrade_and_the_scaled_out_backfill_and_verify(overlay: str) -> None:
    application, jobs = render(f"overlays/{overlay}"), render(f"overlays/{overlay}/jobs")
    assert not of_kind(application, "Job"), "applying the application must start no Job"
    commands = {}
    for job in of_kind(jobs, "Job"):
        spec = job["spec"]
        commands[job["metadata"]["labels"]["loanbook.io/job"]] = (
            pod_spec(job)["containers"][0]["command"],
            spec.get("completionMode", "NonIndexed"),
            spec.get("parallelism", 1),
            spec.get("completions", 1),
        )
        # What the Jobs expect the application overlay to have made.
        named(application, "ServiceAccount", pod_spec(job)["serviceAccountName"])
        for source in pod_spec(job)["containers"][0]["envFrom"]:
            if "configMapRef" in source:
                named(application, "ConfigMap", source["configMapRef"]["name"])
        assert (
            pod_spec(job)["containers"][0]["image"]
            == pod_spec(deployments(overlay)["customer"])["containers"][0]["image"]
        ), "the Jobs run the application's image"
    assert commands["schema-upgrade"] == (["loanbook", "schema", "upgrade"], "NonIndexed", 1, 1)
    for verb in ("backfill", "verify"):
        command, mode, parallelism, completions = commands[verb]
        assert command[:4] == ["loanbook", "migrate", verb, "payments"], verb
        # Every pod runs the same command and joins the table's one run: an index per process.
        assert (mode, completions) == ("Indexed", parallelism), verb
        assert parallelism >= 2, verb
    assert set(commands) == {"schema-upgrade", "backfill", "verify"}
