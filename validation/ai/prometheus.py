"""Prometheus: ready, the GPU exporter's scrape target up, and its metric present."""

from __future__ import annotations

import logging

from validation.ai.config import PrometheusEndpoint, tls_verify
from validation.ai.result import AiCheckResult, CheckFailure, Recorder, run_check

log = logging.getLogger(__name__)


def _api(recorders: list[Recorder], endpoint: PrometheusEndpoint) -> Recorder:
    headers = {}
    if endpoint.token is not None:
        headers["Authorization"] = f"Bearer {endpoint.token.reveal()}"
    api = Recorder(str(endpoint.url), headers=headers, verify=tls_verify(endpoint.verify_tls))
    recorders.append(api)
    return api


def check_ready(endpoint: PrometheusEndpoint) -> AiCheckResult:
    """Prometheus says it is ready to serve queries."""

    def body(recorders: list[Recorder]) -> str:
        api = _api(recorders, endpoint)
        api.request("GET", "/-/ready")
        info = api.json("GET", "/api/v1/status/buildinfo")
        return f"Prometheus {info.get('data', {}).get('version', '?')} is ready"

    return run_check("ai.prometheus.ready", body)


def check_exporter(endpoint: PrometheusEndpoint) -> AiCheckResult:
    """Every active target of the exporter's job is up and its metric has samples."""

    def body(recorders: list[Recorder]) -> str:
        api = _api(recorders, endpoint)
        job = endpoint.exporter_job
        answer = api.json("GET", "/api/v1/targets", params={"state": "active"})
        targets = [
            target
            for target in answer.get("data", {}).get("activeTargets", [])
            if target.get("labels", {}).get("job") == job
        ]
        if not targets:
            jobs = sorted(
                {t.get("labels", {}).get("job", "?") for t in answer["data"]["activeTargets"]}
            )
            raise CheckFailure(
                f"no active target of job {job} (jobs: {', '.join(jobs) or 'none'})",
                f"Prometheus scraping the exporter as job {job}",
            )
        down = [t for t in targets if t.get("health") != "up"]
        if down:
            shown = "; ".join(
                f"{t.get('scrapeUrl')} {t.get('health')}: {t.get('lastError') or 'no error text'}"
                for t in down
            )
            raise CheckFailure(f"target of job {job} not up: {shown}", "every target up")

        query = f'{endpoint.metric}{{job="{job}"}}'
        result = api.json("GET", "/api/v1/query", params={"query": query})
        series = result.get("data", {}).get("result", [])
        if not series:
            raise CheckFailure(f"query {query} returned no series", "at least one series")
        return (
            f"{len(targets)} target(s) of job {job} up; {query} has {len(series)} series"
        )

    return run_check("ai.prometheus.gpu_exporter", body)
