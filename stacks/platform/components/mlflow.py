"""MLflow tracking and model registry on PostgreSQL (CloudNativePG) and the S3 object store."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from stacks.platform.common import (
    ComponentNamespace,
    Platform,
    protected_ingress,
    repository_tag,
    type_token,
)
from stacks.platform.components.storage import BUCKETS, S3_SECRET, Storage

DATABASE = "mlflow"
CLUSTER = "mlflow-db"


def mlflow_values(platform: Platform, s3_endpoint: str) -> dict[str, Any]:
    """Values of the mlflow chart: PostgreSQL backend, S3 artifacts, never an in-memory store."""
    return {
        "image": repository_tag(platform.image("mlflow", "mlflow")),
        "imagePullSecrets": platform.pull_secrets(),
        "backendStore": {
            "databaseMigration": True,
            "postgres": {"enabled": True, "host": f"{CLUSTER}-rw", "port": 5432,
                         "database": DATABASE},
            # CloudNativePG writes the application user's credentials to <cluster>-app.
            "existingDatabaseSecret": {"name": f"{CLUSTER}-app", "usernameKey": "username",
                                       "passwordKey": "password"},
        },
        "artifactRoot": {
            "proxiedArtifactStorage": True,
            "s3": {"enabled": True, "bucket": BUCKETS["mlflow"], "path": "artifacts",
                   "existingSecret": {"name": S3_SECRET,
                                      "keyOfAccessKeyId": "AWS_ACCESS_KEY_ID",
                                      "keyOfSecretAccessKey": "AWS_SECRET_ACCESS_KEY"}},
        },
        "extraEnvVars": {"MLFLOW_S3_ENDPOINT_URL": s3_endpoint},
        "ingress": {"enabled": False},
    }


class Mlflow(pulumi.ComponentResource):
    """A PostgreSQL cluster by its operator, then MLflow pointed at it and at S3."""

    def __init__(self, name: str, platform: Platform, storage: Storage,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(type_token("Mlflow"), name, None, opts)
        space = ComponentNamespace(f"{name}-space", platform, "mlflow",
                                   pulumi.ResourceOptions(parent=self))
        options = platform.config.options.mlflow
        operator = platform.release(f"{name}-postgres-operator", "cloudnative-pg", space.name, {
            "image": repository_tag(platform.image("cloudnative-pg", "operator")),
            "imagePullSecrets": platform.pull_secrets(),
            "config": {"data": {
                "WATCH_NAMESPACE": space.name,
                "POSTGRES_IMAGE_NAME": platform.image("cloudnative-pg", "postgres")}},
        }, self, [space])
        database = k8s.apiextensions.CustomResource(
            f"{name}-database", api_version="postgresql.cnpg.io/v1", kind="Cluster",
            metadata={"name": CLUSTER, "namespace": space.name},
            spec={"instances": options.database_instances,
                  "imageName": platform.image("cloudnative-pg", "postgres"),
                  "imagePullSecrets": platform.pull_secrets(),
                  "bootstrap": {"initdb": {"database": DATABASE, "owner": DATABASE}},
                  "storage": {"size": f"{options.database_storage_gib}Gi",
                              "storageClass": platform.default_storage_class}},
            # The operator's CRDs and the storage classes exist before the cluster is made.
            opts=pulumi.ResourceOptions(parent=self,
                                        depends_on=[operator, *platform.storage_ready]))
        s3 = storage.s3_secret(f"{name}-s3", space.name, BUCKETS["mlflow"], self, [space])
        self.release = platform.release(f"{name}-server", "mlflow", space.name,
                                        mlflow_values(platform, storage.endpoint), self,
                                        [database, s3])
        protected_ingress(platform, "mlflow", space.name, platform.host("mlflow"),
                          f"{name}-server", 80, self, [self.release])
        platform.outputs["mlflow_url"] = f"https://{platform.host('mlflow')}"
        self.register_outputs({"namespace": space.name})
