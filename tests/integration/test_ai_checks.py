"""The AI checks against the real programs that run here without Kubernetes.

MLflow on PostgreSQL, JupyterHub with a local spawner, Prometheus scraping an exporter and a
Flower SuperLink with two SuperNodes, each started on 127.0.0.1 by this module and stopped by
PID. Each check passes against the healthy program and fails for a real reason: PostgreSQL
stopped, a profile whose program cannot start, the exporter stopped, a SuperNode killed.

Stand-ins, named as such: the exporter (dcgm-exporter needs a GPU) and the spawner's profile
mapping (KubeSpawner needs Kubernetes). Flower runs with --insecure here; sites use TLS.
The programs live in their own cached virtualenv (AI_VENV) so the product stays lean.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from blueprint.proc import pid_alive, start_detached, stop_pids
from blueprint.secrets import REDACTOR
from validation.ai import flower, jupyterhub, mlflow, prometheus
from validation.ai.config import (
    FlowerEndpoint,
    JupyterHubEndpoint,
    MlflowEndpoint,
    PrometheusEndpoint,
    Secret,
)
from validation.ai.result import AiCheckResult

pytestmark = [pytest.mark.lab, pytest.mark.heavy]
# Needs no lab node: runs before the session's lab is brought up, so they share no CPU time.
LAB_STAGE = -10

HERE = Path(__file__).resolve().parent / "ai_programs"
AI_VENV = Path(os.environ.get("BLUEPRINT_AI_VENV", "/var/cache/blueprint/ai-venv"))
# The programs under test, pinned so that a cached venv is reused only when it matches.
AI_PACKAGES = [
    "mlflow==3.17.2",
    "psycopg2-binary==2.9.13",
    "jupyterhub==6.1.1",
    "jupyter_server==2.21.1",
    "flwr==1.42.0",
    "numpy==2.4.6",
    "prometheus_client==0.26.0",
]
APT_PACKAGES = ["postgresql", "prometheus", "node-configurable-http-proxy"]
START_TIMEOUT = 240.0


# --- installing and running the programs ---------------------------------------------------


def _root_or_skip() -> None:
    if os.geteuid() != 0:
        pytest.skip("the AI programs' tests need root (apt-get, PostgreSQL as user postgres)")


@pytest.fixture(scope="session")
def ai_venv() -> Path:
    """Debian packages and the AI programs' virtualenv, installed when missing."""
    _root_or_skip()
    missing = [
        package
        for package in APT_PACKAGES
        if "install ok installed"
        not in subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
        ).stdout
    ]
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )

    wanted = "\n".join(AI_PACKAGES) + "\n"
    stamp = AI_VENV / "blueprint-requirements.txt"
    if not stamp.exists() or stamp.read_text() != wanted:
        if not (AI_VENV / "bin" / "python").exists():
            subprocess.run(["python3", "-m", "venv", str(AI_VENV)], check=True)
        pip = [str(AI_VENV / "bin" / "python"), "-m", "pip", "install", "-q", *AI_PACKAGES]
        subprocess.run(pip, check=True)
        stamp.write_text(wanted)
    return AI_VENV


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Programs:
    """Processes one fixture started, stopped by PID at its end."""

    work: Path
    started: list[tuple[int, str]] = field(default_factory=list)
    logs: dict[int, Path] = field(default_factory=dict)

    def start(self, name: str, cmd: list[str], **kwargs: object) -> int:
        log_file = self.work / f"{name}.log"
        process = start_detached(cmd, log_file, **kwargs)  # type: ignore[arg-type]
        # The marker guards the stop against a reused PID: the program's own path.
        self.started.append((process.pid, cmd[0]))
        self.logs[process.pid] = log_file
        return process.pid

    def stop(self, pid: int) -> None:
        stop_pids([entry for entry in self.started if entry[0] == pid])

    def stop_all(self) -> None:
        # Each program ran in its own session whose id is its PID: helpers it started
        # (MLflow's uvicorn, Flower's superexec, a notebook server) stop with their group.
        for pid, marker in self.started:
            if pid_alive(pid, marker):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)
        stop_pids(list(reversed(self.started)), timeout=15)
        left = [pid for pid, marker in self.started if pid_alive(pid, marker)]
        assert not left, f"processes left running: {left}"

    def log_tail(self, pid: int) -> str:
        text = self.logs[pid].read_text(errors="replace") if pid in self.logs else ""
        return "\n".join(text.splitlines()[-15:])


@contextlib.contextmanager
def programs(prefix: str) -> Iterator[Programs]:
    work = Path(tempfile.mkdtemp(prefix=f"bp-ai-{prefix}-"))
    work.chmod(0o755)
    running = Programs(work)
    try:
        yield running
    finally:
        running.stop_all()
        shutil.rmtree(work, ignore_errors=True)


def wait_until(
    ready: Callable[[], bool], what: str, running: Programs, pid: int,
    timeout: float = START_TIMEOUT,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if not pid_alive(pid):
            pytest.fail(f"{what} exited at start:\n{running.log_tail(pid)}")
        time.sleep(1)
    pytest.fail(f"{what} not ready within {timeout:g} s:\n{running.log_tail(pid)}")


def answers(url: str, status: int = 200) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return httpx.get(url, timeout=5).status_code == status
        except httpx.HTTPError:
            return False

    return probe


def eventually(
    check: Callable[[], AiCheckResult], passed: bool, timeout: float = 60
) -> AiCheckResult:
    """Run `check` until its outcome is `passed` (state changes take a scrape or two)."""
    deadline = time.monotonic() + timeout
    result = check()
    while result.passed != passed and time.monotonic() < deadline:
        time.sleep(2)
        result = check()
    return result


def _show(result: AiCheckResult) -> str:
    return f"{result.check} passed={result.passed}: {result.describe()}"


# --- Prometheus scraping the (stand-in) GPU exporter ----------------------------------------


@dataclass
class PrometheusSite:
    endpoint: PrometheusEndpoint
    running: Programs
    exporter_pid: int


@pytest.fixture(scope="module")
def prometheus_site(ai_venv: Path) -> Iterator[PrometheusSite]:
    """Debian's Prometheus scraping the stand-in dcgm-exporter every second."""
    with programs("prometheus") as running:
        exporter_port = free_port()
        exporter_pid = running.start(
            "dcgm-exporter-standin",
            [str(ai_venv / "bin" / "python"), str(HERE / "dcgm_exporter_standin.py"),
             str(exporter_port)],
        )
        wait_until(
            answers(f"http://127.0.0.1:{exporter_port}/metrics"),
            "stand-in exporter", running, exporter_pid,
        )

        config = running.work / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: dcgm-exporter\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
        )
        port = free_port()
        pid = running.start(
            "prometheus",
            ["/usr/bin/prometheus", f"--config.file={config}",
             f"--storage.tsdb.path={running.work / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            cwd=running.work,
        )
        url = f"http://127.0.0.1:{port}"
        wait_until(answers(f"{url}/-/ready"), "Prometheus", running, pid)
        endpoint = PrometheusEndpoint(url=url)  # type: ignore[arg-type]
        yield PrometheusSite(endpoint, running, exporter_pid)


def test_prometheus_checks_pass_with_exporter_scraped(prometheus_site: PrometheusSite) -> None:
    ready = prometheus.check_ready(prometheus_site.endpoint)
    assert ready.passed, _show(ready)
    # The first scrape may not have happened yet.
    scraped = eventually(lambda: prometheus.check_exporter(prometheus_site.endpoint), True)
    assert scraped.passed, _show(scraped)
    assert 'DCGM_FI_DEV_GPU_UTIL{job="dcgm-exporter"} has 1 series' in scraped.reason


def test_prometheus_check_fails_for_unknown_job(prometheus_site: PrometheusSite) -> None:
    endpoint = prometheus_site.endpoint.model_copy(update={"exporter_job": "nvidia-dcgm"})
    result = prometheus.check_exporter(endpoint)
    assert not result.passed
    assert "no active target of job nvidia-dcgm (jobs: dcgm-exporter)" in result.reason


def test_prometheus_check_fails_for_missing_metric(prometheus_site: PrometheusSite) -> None:
    endpoint = prometheus_site.endpoint.model_copy(update={"metric": "DCGM_FI_DEV_FB_USED"})
    result = prometheus.check_exporter(endpoint)
    assert not result.passed
    assert 'DCGM_FI_DEV_FB_USED{job="dcgm-exporter"} returned no series' in result.reason


def test_prometheus_check_fails_when_exporter_stops(prometheus_site: PrometheusSite) -> None:
    prometheus_site.running.stop(prometheus_site.exporter_pid)
    result = eventually(lambda: prometheus.check_exporter(prometheus_site.endpoint), False)
    assert not result.passed
    assert "target of job dcgm-exporter not up" in result.reason, _show(result)
    assert "connection refused" in result.reason, _show(result)


# --- JupyterHub with a local spawner ---------------------------------------------------------

HUB_TOKEN_ENV = "BPV_TEST_HUB_TOKEN"


@pytest.fixture(scope="module")
def hub_endpoint(ai_venv: Path) -> Iterator[JupyterHubEndpoint]:
    """JupyterHub (configurable-http-proxy from Debian) whose spawner maps profiles."""
    token = secrets.token_hex(24)
    with programs("jupyterhub") as running, pytest.MonkeyPatch.context() as patch:
        patch.setenv(HUB_TOKEN_ENV, token)
        port = free_port()
        env = {
            **os.environ,
            "PATH": f"{ai_venv / 'bin'}:{os.environ['PATH']}",
            # Debian's configurable-http-proxy finds its node modules (commander...) here.
            "NODE_PATH": "/usr/share/nodejs",
            "BPV_HUB_DIR": str(running.work),
            "BPV_SINGLEUSER": str(ai_venv / "bin" / "jupyterhub-singleuser"),
            "BPV_HUB_PORT": str(port),
            "BPV_HUB_API_PORT": str(free_port()),
            "BPV_PROXY_API_PORT": str(free_port()),
            "BPV_HUB_TOKEN": token,
        }
        pid = running.start(
            "jupyterhub",
            [str(ai_venv / "bin" / "jupyterhub"), "-f", str(HERE / "jupyterhub_config.py")],
            env=env,
            cwd=running.work,
        )
        url = f"http://127.0.0.1:{port}"
        wait_until(answers(f"{url}/hub/api/"), "JupyterHub", running, pid)
        yield JupyterHubEndpoint(
            url=url,  # type: ignore[arg-type]
            token=Secret(env=HUB_TOKEN_ENV),
            profiles=["minimal", "datascience"],
            spawn_timeout=120,
        )


def test_jupyterhub_checks_pass_for_each_profile(hub_endpoint: JupyterHubEndpoint) -> None:
    health = jupyterhub.check_health(hub_endpoint)
    assert health.passed, _show(health)
    for profile in hub_endpoint.profiles:
        result = jupyterhub.check_profile(hub_endpoint, profile)
        assert result.passed, _show(result)
        assert f"server blueprint-validate/bpv-{profile} started" in result.reason
        assert "and stopped" in result.reason


def test_jupyterhub_profile_that_cannot_start_fails(hub_endpoint: JupyterHubEndpoint) -> None:
    result = jupyterhub.check_profile(hub_endpoint, "broken")
    assert not result.passed
    assert "spawn of server bpv-broken failed" in result.reason, _show(result)
    assert "/nonexistent/bin/jupyterhub-singleuser" in result.reason, _show(result)

    # The failed server is gone, and a good profile still starts afterwards.
    again = jupyterhub.check_profile(hub_endpoint, "minimal")
    assert again.passed, _show(again)


def test_jupyterhub_rejects_a_wrong_token_without_showing_it(
    hub_endpoint: JupyterHubEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "canary-" + secrets.token_hex(16)
    monkeypatch.setenv(HUB_TOKEN_ENV, wrong)
    result = jupyterhub.check_health(hub_endpoint)
    assert not result.passed
    assert "/hub/api/user answered HTTP 403" in result.reason, _show(result)
    assert wrong not in result.describe() + repr(result.exchanges)
    assert wrong not in REDACTOR.redact(f"Authorization: token {wrong}")


# --- Flower: a SuperLink and two SuperNodes --------------------------------------------------


@dataclass
class FlowerSite:
    endpoint: FlowerEndpoint
    running: Programs
    supernodes: list[int]


@pytest.fixture(scope="module")
def flower_site(ai_venv: Path) -> Iterator[FlowerSite]:
    """flower-superlink and two flower-supernode, insecure, on loopback."""
    with programs("flower") as running:
        env = {**os.environ, "PATH": f"{ai_venv / 'bin'}:{os.environ['PATH']}",
               "FLWR_HOME": str(running.work / "flwr-home")}
        port = free_port()
        superlink = running.start(
            "superlink",
            [str(ai_venv / "bin" / "flower-superlink"), "--insecure", "--host", "127.0.0.1",
             "--port", str(port)],
            env=env, cwd=running.work,
        )
        address = f"127.0.0.1:{port}"
        wait_until(answers(f"http://{address}/", 404), "Flower SuperLink", running, superlink)
        supernodes = [
            running.start(
                f"supernode-{index}",
                [str(ai_venv / "bin" / "flower-supernode"), "--insecure",
                 "--superlink", address, "--port", str(free_port())],
                env=env, cwd=running.work,
            )
            for index in (1, 2)
        ]
        endpoint = FlowerEndpoint(
            address=address, insecure=True, supernodes=2, round_timeout=20, run_timeout=180,
            flwr=str(ai_venv / "bin" / "flwr"),
        )
        online = eventually(lambda: flower.check_superlink(endpoint), True, timeout=120)
        assert online.passed, _show(online)
        yield FlowerSite(endpoint, running, supernodes)


def test_flower_round_completes_over_two_supernodes(flower_site: FlowerSite) -> None:
    superlink = flower.check_superlink(flower_site.endpoint)
    assert superlink.passed, _show(superlink)
    assert "2 SuperNodes online" in superlink.reason
    result = flower.check_round(flower_site.endpoint)
    assert result.passed, _show(result)
    assert "completed one round over 2 SuperNodes" in result.reason


def test_flower_checks_fail_for_three_supernodes(flower_site: FlowerSite) -> None:
    endpoint = flower_site.endpoint.model_copy(update={"supernodes": 3})
    result = flower.check_superlink(endpoint)
    assert not result.passed
    assert "2 of 2 SuperNodes online" in result.reason, _show(result)


def test_flower_round_fails_when_a_supernode_is_killed(flower_site: FlowerSite) -> None:
    flower_site.running.stop(flower_site.supernodes[1])
    result = flower.check_round(flower_site.endpoint)
    assert not result.passed
    # Either the ServerApp saw one reply of two within its round timeout, or the run
    # did not finish in the check's time: both say the round did not complete.
    assert "finished:failed" in result.reason or "still running" in result.reason, _show(
        result
    )


def test_flower_check_fails_when_superlink_unreachable(flower_site: FlowerSite) -> None:
    endpoint = flower_site.endpoint.model_copy(update={"address": f"127.0.0.1:{free_port()}"})
    result = flower.check_superlink(endpoint)
    assert not result.passed
    assert "supernode list blueprint-site --format json failed" in result.reason, _show(result)


# --- MLflow on PostgreSQL -------------------------------------------------------------------


@dataclass
class MlflowSite:
    endpoint: MlflowEndpoint
    running: Programs
    postgres_pid: int
    mlflow_pid: int


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL's initdb not found under /usr/lib/postgresql (package postgresql)")
    return found[-1].parent


@pytest.fixture(scope="module", autouse=True)
def mlflow_started(ai_venv: Path) -> Iterator[MlflowSite]:
    """A throwaway PostgreSQL cluster (as user postgres) and an MLflow server using it.

    Started with the module's first test and awaited by `mlflow_site`: MLflow's schema
    migrations take a minute or two here, while the other programs' tests run.
    """
    postgres = pwd.getpwnam("postgres")
    with programs("mlflow") as running:
        # A PostgreSQL cluster of its own, owned by postgres, on a free port.
        data = running.work / "pgdata"
        data.mkdir()
        os.chown(data, postgres.pw_uid, postgres.pw_gid)
        pg_bin = _postgres_bin()
        subprocess.run(
            [str(pg_bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E",
             "UTF8"],
            check=True, user="postgres", cwd="/", capture_output=True,
        )
        pg_port = free_port()
        pg_pid = running.start(
            "postgres",
            [str(pg_bin / "postgres"), "-D", str(data), "-p", str(pg_port), "-h", "127.0.0.1",
             "-k", str(data)],
            user="postgres",
        )
        psql = [str(pg_bin / "psql"), "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres"]

        def database_up() -> bool:
            query = [*psql, "-tAc", "select 1"]
            return subprocess.run(query, capture_output=True, cwd="/").returncode == 0

        wait_until(database_up, "PostgreSQL", running, pg_pid)
        subprocess.run([*psql, "-c", "create database mlflow"], check=True, capture_output=True)

        # MLflow's tracking server on that database, artifacts proxied to a local folder.
        port = free_port()
        mlflow_pid = running.start(
            "mlflow",
            [str(ai_venv / "bin" / "mlflow"), "server",
             "--backend-store-uri", f"postgresql+psycopg2://postgres@127.0.0.1:{pg_port}/mlflow",
             "--artifacts-destination", str(running.work / "artifacts"),
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            cwd=running.work,
        )
        endpoint = MlflowEndpoint(url=f"http://127.0.0.1:{port}")  # type: ignore[arg-type]
        yield MlflowSite(endpoint, running, pg_pid, mlflow_pid)


@pytest.fixture(scope="module")
def mlflow_site(mlflow_started: MlflowSite) -> MlflowSite:
    site = mlflow_started
    health = f"{site.endpoint.url}health"
    wait_until(answers(health), "MLflow server", site.running, site.mlflow_pid)
    return site


def test_mlflow_checks_pass_on_postgresql(mlflow_site: MlflowSite) -> None:
    health = mlflow.check_health(mlflow_site.endpoint)
    assert health.passed, _show(health)
    round_trip = mlflow.check_round_trip(mlflow_site.endpoint)
    assert round_trip.passed, _show(round_trip)
    assert "version 1 READY" in round_trip.reason

    # A second run registers the next version of the same model.
    again = mlflow.check_round_trip(mlflow_site.endpoint)
    assert again.passed and "version 2 READY" in again.reason, _show(again)


def test_mlflow_checks_fail_when_postgresql_stops(mlflow_site: MlflowSite) -> None:
    mlflow_site.running.stop(mlflow_site.postgres_pid)

    health = mlflow.check_health(mlflow_site.endpoint)
    assert not health.passed
    # The reason names the request that failed and what the server said about its database.
    assert "/api/2.0/mlflow/experiments/search answered HTTP 5" in health.reason, _show(health)
    round_trip = mlflow.check_round_trip(mlflow_site.endpoint)
    assert not round_trip.passed
    assert "HTTP 5" in round_trip.reason, _show(round_trip)
