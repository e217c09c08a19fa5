"""The blueprint's platform layer is checked when it loads: file, line, field, expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from blueprint.errors import BadInput
from blueprint.loader import load_blueprint
from blueprint.paths import BUILTIN_BLUEPRINTS_DIR

AI_EDGE = (BUILTIN_BLUEPRINTS_DIR / "ai-edge.yaml").read_text()


def test_the_ai_edge_platform_layer_loads() -> None:
    blueprint, _ = load_blueprint("ai-edge", Path("."))
    platform = blueprint.layers[-1]
    assert platform.name == "platform"
    assert platform.versions["gpu-operator"] == "v25.3.0"


@pytest.mark.parametrize(("old", "new", "message"), [
    ("mlflow: {backend: postgresql,", "mlflow: {backend: sqlite,",
     "layers[5].options.mlflow.backend: backend 'sqlite' is refused: runs and models must "
     "survive a restart; use postgresql"),
    ("object_store: seaweedfs ", "object_store: minio ",
     "minio is refused: its community edition no longer ships images"),
    ("          - {name: local-path, kind: local-path, default: true}",
     "          - {name: local-path, kind: local-path}",
     "exactly one storage class must be the default; got none"),
    ("      gpu-operator: v25.3.0\n", "",
     "versions: charts gpu-operator have no pinned version"),
    ("image: quay.io/jupyter/scipy-notebook:2025-03-24\n            frameworks",
     "image: scipy-notebook\n            frameworks",
     "image 'scipy-notebook' is not a pinned reference"),
    ("serving: {deployment_mode: RawDeployment}", "serving: {deployment_mode: Serverless}",
     "deployment_mode 'Serverless' needs Knative"),
    ("serving: {deployment_mode: RawDeployment}",
     "serving: {deployment_mode: RawDeployment, published_models: [Iris]}",
     "published_models: 'Iris' is not an InferenceService name"),
    ("          - {name: local-path, kind: local-path, default: true}",
     "          - {name: local-path, kind: local-path, default: true}\n"
     "          - {name: shared, kind: nfs}",
     "storage class shared: kind nfs needs nfs_server"),
    ("            frameworks: [tensorflow, tensorboard]", "            frameworks: [scipy]",
     "the catalog has no image with tensorflow"),
])
def test_bad_platform_options_name_file_line_and_field(tmp_path: Path, old: str, new: str,
                                                       message: str) -> None:
    assert old in AI_EDGE
    path = tmp_path / "bp.yaml"
    path.write_text(AI_EDGE.replace(old, new, 1))
    with pytest.raises(BadInput) as caught:
        load_blueprint(str(path), tmp_path)
    text = str(caught.value)
    assert text.startswith(f"{path}:")
    assert message in text
