"""Fixtures for the platform stack: the program run under Pulumi's mocks, once per config.

The stack is never deployed here (no Pulumi CLI, no cluster): the mocks answer every
registration with its own inputs, and generated passwords get a stand-in value.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from blueprint.paths import BUILTIN_BLUEPRINTS_DIR
from blueprint.platform.config import PlatformConfig, PlatformLayer
from blueprint.platform.preview import ProgramRun, run_program

# Every test that reads a program run counts its assertions here; a test whose checks sit
# in a callback that never ran would leave its count at zero and fail (see `checked`).
_CHECKS: dict[str, int] = {}


def ai_edge_layer() -> dict[str, Any]:
    data = yaml.safe_load((BUILTIN_BLUEPRINTS_DIR / "ai-edge.yaml").read_text())
    layer = next(item for item in data["layers"] if item["name"] == "platform")
    return copy.deepcopy(layer)


NODES = [{"name": "cp-1", "roles": ["control-plane", "worker"]},
         {"name": "gpu-1", "roles": ["worker", "gpu"]},
         {"name": "store-1", "roles": ["worker", "storage"]}]


def make_config(edit: Callable[[dict[str, Any]], None] | None = None,
                site: dict[str, Any] | None = None, nodes: list[dict[str, Any]] | None = None,
                registry_auth: str | None = None) -> PlatformConfig:
    """The ai-edge platform layer as a stack config, with `edit` applied to the layer."""
    layer = ai_edge_layer()
    if edit is not None:
        edit(layer)
    checked = PlatformLayer.model_validate(layer)
    charts = {key: {"chart": chart.chart, "repository_url": f"https://charts.test/{key}",
                    "version": checked.versions[key], "images": chart.images}
              for key, chart in checked.options.charts.items()}
    if "kubeflow-pipelines" in checked.versions:
        charts["kubeflow-pipelines"] = {
            "chart": "kubeflow-pipelines", "repository_url": "https://manifests.test/kfp",
            "version": checked.versions["kubeflow-pipelines"], "images": {}}
    settings = site or {"domain": "edge1.example.net",
                        "load_balancer_addresses": ["10.20.0.200-10.20.0.220"],
                        "flower": {"role": "hub"}}
    return PlatformConfig.model_validate({
        "site": "edge1", "kubernetes_version": "1.31", "host_gpu_driver": True,
        "options": layer["options"], "settings": settings, "charts": charts,
        "nodes": nodes or NODES, "registry_auth": registry_auth})


def storage_kinds(layer: dict[str, Any]) -> None:
    """nfs, longhorn and rook-ceph classes, Ceph RGW as the object store."""
    options = layer["options"]
    options["storage"] = {"classes": [
        {"name": "local-path", "kind": "local-path"},
        {"name": "nfs", "kind": "nfs", "nfs_server": "10.20.0.5"},
        {"name": "longhorn", "kind": "longhorn"},
        {"name": "ceph-block", "kind": "rook-ceph", "default": True}],
        "object_store": "ceph-rgw"}
    options["charts"].update({
        "nfs-subdir-external-provisioner": {
            "chart": "nfs-subdir-external-provisioner",
            "repository": "nfs-subdir-external-provisioner",
            "images": {"provisioner":
                       "registry.k8s.io/sig-storage/nfs-subdir-external-provisioner:v4.0.2"}},
        "longhorn": {"chart": "longhorn", "repository": "longhorn"},
        "rook-ceph": {"chart": "rook-ceph", "repository": "rook-release",
                      "images": {"operator": "docker.io/rook/ceph:v1.17.2"}},
        "rook-ceph-cluster": {"chart": "rook-ceph-cluster", "repository": "rook-release",
                              "images": {"ceph": "quay.io/ceph/ceph:v19.2.2"}}})
    layer["versions"].update({"nfs-subdir-external-provisioner": "4.0.18",
                              "longhorn": "1.8.1", "rook-ceph": "v1.17.2",
                              "rook-ceph-cluster": "v1.17.2"})


@pytest.fixture(scope="session")
def program_runs() -> Iterator[Callable[[PlatformConfig], ProgramRun]]:
    cache: dict[str, ProgramRun] = {}

    def run(config: PlatformConfig) -> ProgramRun:
        key = config.model_dump_json()
        if key not in cache:
            cache[key] = run_program(config)
        return cache[key]

    yield run


@pytest.fixture(scope="session")
def default_run(program_runs: Callable[[PlatformConfig], ProgramRun]) -> ProgramRun:
    return program_runs(make_config())


class Checked:
    """Counts the assertions a test really made."""

    def __init__(self, name: str) -> None:
        self.name = name
        _CHECKS[name] = 0

    def that(self, condition: bool, message: str = "") -> None:
        _CHECKS[self.name] += 1
        assert condition, message

    @property
    def count(self) -> int:
        return _CHECKS[self.name]


@pytest.fixture
def checked(request: pytest.FixtureRequest) -> Iterator[Checked]:
    """An assertion counter that fails the test if it ended without checking anything."""
    counter = Checked(request.node.nodeid)
    yield counter
    if counter.count == 0:
        pytest.fail(f"{request.node.nodeid} made no assertion on the program run")


def values(run: ProgramRun, release: str) -> dict[str, Any]:
    return dict(run.by_name(release).inputs["values"])


def releases(run: ProgramRun) -> list[Any]:
    return run.by_type("kubernetes:helm.sh/v3:Release")


EXAMPLE_SITE = Path(__file__).resolve().parents[3] / "inventory" / "example-site"


RUN_FIXTURES = {"default_run", "program_runs"}


def require_checked(item: pytest.Item) -> None:
    """A test that reads a program run must count its checks (the `checked` fixture),
    whether it takes the run from a fixture or runs the program itself."""
    names = set(getattr(item, "fixturenames", ()))
    function = getattr(item, "function", None)
    runs_itself = function is not None and "run_program(" in inspect.getsource(function)
    if (names & RUN_FIXTURES or runs_itself) and "checked" not in names:
        pytest.fail(f"{item.nodeid} reads a program run without the `checked` counter, so "
                    "nothing would prove its assertions ran")
