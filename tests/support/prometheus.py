"""A real Prometheus server (the Debian package's binary) scraping a running stack, with the project's rules."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from devstack.processes import free_port
from devstack.tools import project_root

if TYPE_CHECKING:
    from tests.support.system import RunningSystem

RULES = project_root() / "deploy" / "prometheus" / "rules"
# The stack's processes, each scraped as job loanbook-<name>.
PROCESSES = ("customer", "payment", "logging", "gateway")


def scrape_config(targets: Mapping[str, str], interval: str = "1s") -> dict[str, Any]:
    """Prometheus configuration scraping each `job -> host:port` every `interval`, evaluating the project's rules."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(path) for path in sorted(RULES.glob("*.yml"))],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]} for job, target in targets.items()
        ],
    }


class Prometheus:
    """Talks to Prometheus' HTTP API."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def query(self, expression: str) -> list[dict[str, Any]]:
        """An instant query's vector: one {"metric": labels, "value": [time, "number"]} per series."""
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            response = await client.get("/api/v1/query", params={"query": expression})
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def wait_for(self, expression: str, timeout: float = 30, poll: float = 0.5) -> list[dict[str, Any]]:
        """The query's vector once it is not empty (the rules and scrapes run on Prometheus' clock, not ours)."""
        deadline = time.monotonic() + timeout
        while True:
            result = await self.query(expression)
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"no series for {expression} within {timeout} s")
            await asyncio.sleep(poll)

    async def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule (recording and alerting) with its health and, for alerts, its state."""
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            response = await client.get("/api/v1/rules")
        response.raise_for_status()
        return [rule for group in response.json()["data"]["groups"] for rule in group["rules"]]


@contextlib.asynccontextmanager
async def running_prometheus(targets: Mapping[str, str], work_dir: Path) -> AsyncIterator[Prometheus]:
    """Starts `prometheus` scraping `targets` (job -> host:port) until the block ends."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus not found: `make install` installs the Debian package 'prometheus' as root")
    config = work_dir / "prometheus.yml"
    config.write_text(json.dumps(scrape_config(targets), indent=2))  # JSON is YAML too
    port = free_port()
    log = (work_dir / "prometheus.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={work_dir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdout=log,
        stderr=log,
    )
    prometheus = Prometheus(f"http://127.0.0.1:{port}")
    try:
        async with httpx.AsyncClient(base_url=prometheus.url, timeout=2) as client:
            deadline = time.monotonic() + 30
            while True:
                if process.returncode is not None:
                    raise RuntimeError(f"prometheus exited: {(work_dir / 'prometheus.log').read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/-/ready")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("prometheus did not become ready within 30 s")
                await asyncio.sleep(0.2)
        yield prometheus
    finally:
        if process.returncode is None:
            process.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 10)
            if process.returncode is None:
                process.kill()
                await process.wait()
        log.close()


@contextlib.asynccontextmanager
async def scraping_the_stack(system: RunningSystem, work_dir: Path) -> AsyncIterator[Prometheus]:
    """A Prometheus scraping every process of a running stack, with the project's rules."""
    targets = {f"loanbook-{name}": f"127.0.0.1:{system.ports.metrics_port(name)}" for name in PROCESSES}
    async with running_prometheus(targets, work_dir) as server:
        yield server
