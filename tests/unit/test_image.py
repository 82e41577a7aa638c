"""deploy/Dockerfile builds the wheel from every package pyproject.toml lists and runs it in a lean, non-root stage."""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath

from gateway.config import GatewaySettings
from services.customer.config import CustomerSettings
from services.logging.config import LoggingSettings
from services.payment.config import PaymentSettings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / "deploy" / "Dockerfile.dockerignore"


@dataclass
class Stage:
    name: str
    image: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def arguments(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]


@cache
def stages() -> dict[str, Stage]:
    """The Dockerfile's stages by name, each with its instructions (continuations joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending.strip():
            logical.append(pending.strip())
        pending = ""
    build_args: dict[str, str] = {}
    found: dict[str, Stage] = {}
    current: Stage | None = None
    for text in logical:
        instruction, _, args = text.partition(" ")
        instruction = instruction.upper()
        if instruction == "ARG" and current is None:
            name, _, default = args.partition("=")
            build_args[name] = default
        elif instruction == "FROM":
            image, _, name = args.partition(" AS ")
            image = re.sub(r"\$\{(\w+)\}", lambda match: build_args[match.group(1)], image)
            current = found.setdefault(name.strip(), Stage(name.strip(), image.strip()))
        else:
            assert current is not None, f"{instruction} before any FROM"
            current.instructions.append((instruction, args))
    return found


def wheel_packages() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages: list[str] = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    return packages


def scripts() -> dict[str, str]:
    found: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    return found


def copies(stage: Stage) -> list[tuple[list[str], str]]:
    """Each COPY of the build context in `stage`: its sources and destination (COPY --from=... excluded)."""
    found = []
    for args in stage.arguments("COPY"):
        words = shlex.split(args)
        if any(word.startswith("--from=") for word in words):
            continue
        paths = [word for word in words if not word.startswith("--")]
        found.append((paths[:-1], paths[-1]))
    return found


def covered(package: str, sources: list[str]) -> bool:
    return any(PurePosixPath(package).is_relative_to(source) for source in sources)


def test_the_build_stage_copies_every_package_of_the_wheel_to_the_same_path() -> None:
    build = stages()["build"]
    sources = []
    for paths, destination in copies(build):
        if len(paths) == 1 and not destination.endswith("/") and destination != "./":
            assert paths[0] == destination, f"COPY {paths[0]} {destination} moves a package the wheel looks for"
        sources.extend(paths)
    missing = [package for package in wheel_packages() if not covered(package, sources)]
    assert missing == [], f"deploy/Dockerfile does not copy {missing}; hatchling would silently build without them"
    for needed in ("pyproject.toml", "README.md"):  # the project's metadata: the readme is the long description
        assert needed in sources


def test_the_build_context_lets_every_copied_path_through() -> None:
    rules = [line for line in DOCKERIGNORE.read_text().splitlines() if line and not line.startswith("#")]
    assert rules[0] == "*", "the context is an allowlist"
    allowed = {rule.removeprefix("!") for rule in rules if rule.startswith("!")}
    copied = [source for paths, _ in copies(stages()["build"]) for source in paths if source != "./"]
    assert [source for source in copied if not covered(source, sorted(allowed))] == []
    assert [package for package in wheel_packages() if not covered(package, sorted(allowed))] == []


def test_the_runtime_stage_is_python_slim_with_no_sources_and_only_the_runtime_lock() -> None:
    runtime = stages()["runtime"]
    assert runtime.image == "python:3.11-slim"
    assert copies(runtime) == [], (
        "the runtime stage takes nothing from the sources: only the wheel, via the build stage"
    )
    (install,) = [args for args in runtime.arguments("RUN") if "pip install" in args]
    assert "requirements.runtime.lock" in install
    assert "requirements.lock " not in install
    assert re.search(r"/dist/\*\.whl", install)


def image_user() -> tuple[str, str]:
    """The runtime stage's `USER uid:gid`, as written (tests/unit/test_kubernetes_manifests.py runs pods as it)."""
    (user,) = stages()["runtime"].arguments("USER")
    uid, _, gid = user.strip().partition(":")
    return uid, gid


def test_the_runtime_runs_as_a_numeric_non_root_user() -> None:
    uid, gid = image_user()
    assert uid.isdigit(), "numeric, so Kubernetes' runAsNonRoot can verify it"
    assert gid.isdigit(), "a group too, or the user's primary group would be resolved from /etc/passwd"
    assert int(uid) != 0
    assert int(gid) != 0


def test_every_process_has_a_console_script_and_the_image_commands_name_real_ones() -> None:
    for process in ("customer", "payment", "logging", "gateway", "healthcheck"):
        assert f"loanbook-{process}" in scripts()
    runtime = stages()["runtime"]
    (healthcheck,) = runtime.arguments("HEALTHCHECK")
    assert re.search(r"CMD \[\"loanbook-healthcheck\"\]", healthcheck)
    (command,) = runtime.arguments("CMD")
    assert shlex.split(command.strip("[]").replace(",", " "))[0] in scripts()


def test_the_image_exposes_each_process_port_and_listens_beyond_loopback() -> None:
    runtime = stages()["runtime"]
    exposed = {int(port) for args in runtime.arguments("EXPOSE") for port in args.split()}
    defaults = {
        CustomerSettings.model_fields["grpc_port"].default,
        PaymentSettings.model_fields["grpc_port"].default,
        LoggingSettings.model_fields["grpc_port"].default,
        GatewaySettings.model_fields["http_port"].default,
    }
    assert defaults <= exposed
    env = dict(pair.split("=", 1) for args in runtime.arguments("ENV") for pair in shlex.split(args) if "=" in pair)
    assert env["PYTHONUNBUFFERED"] == "1"
    for process in ("CUSTOMER", "PAYMENT", "LOGGING", "GATEWAY", "MIGRATION"):
        assert env[f"LOANBOOK_{process}_METRICS_HOST"] == "0.0.0.0"
    for variable in ("LOANBOOK_CUSTOMER_GRPC_HOST", "LOANBOOK_PAYMENT_GRPC_HOST", "LOANBOOK_LOGGING_GRPC_HOST"):
        assert env[variable] == "0.0.0.0"
    assert env["LOANBOOK_GATEWAY_HTTP_HOST"] == "0.0.0.0"
