"""Storage classes matching the storage layer (one default) and the S3 object store."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from blueprint.platform.config import StorageClassOption
from stacks.platform.common import (
    ComponentNamespace,
    Platform,
    repository_tag,
    to_json,
    type_token,
)

PROVISIONERS = {
    "local-path": "rancher.io/local-path",
    "nfs": "cluster.local/nfs-subdir-external-provisioner",
    "longhorn": "driver.longhorn.io",
    "rook-ceph": "edge-storage.rbd.csi.ceph.com",
}
S3_SECRET = "object-store-s3"
# The buckets the platform writes to, made with the object store: S3 clients create none.
BUCKETS = {"mlflow": "mlflow", "pipelines": "pipelines"}
# Ceph RGW: buckets and their keys come from ObjectBucketClaims of this class.
BUCKET_CLASS = "object-store-bucket"


def ceph_sizing(nodes: int) -> dict[str, int]:
    """Monitors and pool replicas a Ceph cluster of `nodes` storage nodes can hold."""
    # A monitor quorum wants an odd count; a pool cannot keep more copies than nodes.
    return {"mons": 1 if nodes < 3 else 3, "replicas": min(3, nodes),
            "min_size": 1 if nodes < 3 else 2}


def seaweedfs_sizing(nodes: int) -> dict[str, Any]:
    """Volume servers and the replication string SeaweedFS can honour on `nodes` nodes."""
    # "000": one copy; "001": a second copy on another server of the same rack.
    return {"volume_replicas": min(nodes, 3), "replication": "000" if nodes < 2 else "001"}


def storage_nodes(platform: Platform) -> int:
    return len(platform.config.nodes_with("storage")) or len(platform.config.nodes)


def storage_class_object(item: StorageClassOption) -> dict[str, Any]:
    annotations = {"storageclass.kubernetes.io/is-default-class": str(item.default).lower()}
    body: dict[str, Any] = {
        "metadata": {"name": item.name, "annotations": annotations},
        "provisioner": PROVISIONERS[item.kind],
        "reclaim_policy": "Delete",
        "volume_binding_mode": "WaitForFirstConsumer" if item.kind == "local-path"
        else "Immediate",
        "allow_volume_expansion": item.kind in ("longhorn", "rook-ceph"),
    }
    if item.kind == "rook-ceph":
        body["parameters"] = {
            "clusterID": "edge-storage", "pool": "replicapool", "imageFormat": "2",
            "imageFeatures": "layering", "csi.storage.k8s.io/fstype": "ext4",
            "csi.storage.k8s.io/provisioner-secret-name": "rook-csi-rbd-provisioner",
            "csi.storage.k8s.io/provisioner-secret-namespace": "edge-storage",
            "csi.storage.k8s.io/node-stage-secret-name": "rook-csi-rbd-node",
            "csi.storage.k8s.io/node-stage-secret-namespace": "edge-storage",
        }
    if item.kind == "longhorn":
        body["parameters"] = {"numberOfReplicas": "1"}
    return body


class Storage(pulumi.ComponentResource):
    """Provisioners, storage classes and the object store everything else writes to."""

    def __init__(self, name: str, platform: Platform,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(type_token("Storage"), name, None, opts)
        space = ComponentNamespace(f"{name}-space", platform, "storage",
                                   pulumi.ResourceOptions(parent=self))
        options = platform.config.options.storage
        kinds = {item.kind for item in options.classes}
        nodes = storage_nodes(platform)
        provisioners: list[pulumi.Resource] = []

        # Provisioners: k3s bundles local-path; the others come as charts.
        if "nfs" in kinds:
            nfs = next(item for item in options.classes if item.kind == "nfs")
            provisioners.append(platform.release(
                f"{name}-nfs", "nfs-subdir-external-provisioner", space.name,
                {"nfs": {"server": nfs.nfs_server, "path": nfs.nfs_path},
                 "storageClass": {"create": False},
                 "image": repository_tag(platform.image("nfs-subdir-external-provisioner",
                                                        "provisioner")),
                 "imagePullSecrets": platform.pull_secrets()},
                self, [space]))
        if "longhorn" in kinds:
            provisioners.append(platform.release(
                f"{name}-longhorn", "longhorn", space.name,
                {"persistence": {"defaultClass": False,
                                 "defaultClassReplicaCount": min(3, nodes)},
                 "defaultSettings": {"defaultReplicaCount": min(3, nodes)},
                 "privateRegistry": {"registryUrl": platform.config.registry.override or "",
                                     "registrySecret": platform.pull_secret or ""}},
                self, [space]))
        if "rook-ceph" in kinds:
            provisioners += self._ceph(name, platform, space, nodes)
        self.classes = [
            k8s.storage.v1.StorageClass(
                f"{name}-class-{item.name}", **storage_class_object(item),
                opts=pulumi.ResourceOptions(parent=self, depends_on=provisioners))
            for item in options.classes
        ]
        platform.storage_ready.extend(self.classes)

        # The S3 object store. SeaweedFS takes keys generated here, shared with the
        # components that use it; Ceph RGW makes a user and keys per bucket claim.
        self.kind = options.object_store
        if self.kind == "seaweedfs":
            self.access_key = random.RandomPassword(f"{name}-s3-access-key", length=20,
                                                    special=False,
                                                    opts=pulumi.ResourceOptions(parent=self))
            self.secret_key = random.RandomPassword(f"{name}-s3-secret-key", length=40,
                                                    special=False,
                                                    opts=pulumi.ResourceOptions(parent=self))
            self.endpoint = "http://object-store-s3.edge-storage.svc.cluster.local:8333"
            self._seaweedfs(name, platform, space, nodes)
            platform.outputs["object_store_access_key"] = pulumi.Output.secret(
                self.access_key.result)
            platform.outputs["object_store_secret_key"] = pulumi.Output.secret(
                self.secret_key.result)
        else:
            self.endpoint = "http://rook-ceph-rgw-objects.edge-storage.svc.cluster.local"
            self.bucket_class = k8s.storage.v1.StorageClass(
                f"{name}-bucket-class", metadata={"name": BUCKET_CLASS},
                provisioner="edge-storage.ceph.rook.io/bucket", reclaim_policy="Retain",
                parameters={"objectStoreName": "objects",
                            "objectStoreNamespace": "edge-storage"},
                opts=pulumi.ResourceOptions(parent=self, depends_on=provisioners))
        platform.outputs["object_store_endpoint"] = self.endpoint
        self.register_outputs({"classes": [item.name for item in options.classes],
                               "object_store": self.endpoint})

    def s3_secret(self, name: str, namespace: str, bucket: str, parent: pulumi.Resource,
                  depends_on: list[pulumi.Resource]) -> pulumi.Resource:
        """The object store's keys as the Secret `object-store-s3` in a consumer's namespace.

        SeaweedFS: the generated keys, written here. Ceph RGW: an ObjectBucketClaim of the
        bucket, for which Rook makes a user and writes its keys into a Secret of the claim's
        name with the same two keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
        """
        if self.kind == "ceph-rgw":
            return k8s.apiextensions.CustomResource(
                name, api_version="objectbucket.io/v1alpha1", kind="ObjectBucketClaim",
                metadata={"name": S3_SECRET, "namespace": namespace},
                spec={"bucketName": bucket, "storageClassName": BUCKET_CLASS},
                opts=pulumi.ResourceOptions(parent=parent,
                                            depends_on=[*depends_on, self.bucket_class]))
        return k8s.core.v1.Secret(
            name,
            metadata={"name": S3_SECRET, "namespace": namespace},
            string_data={"AWS_ACCESS_KEY_ID": self.access_key.result,
                         "AWS_SECRET_ACCESS_KEY": self.secret_key.result},
            opts=pulumi.ResourceOptions(parent=parent, depends_on=depends_on,
                                        additional_secret_outputs=["stringData"]),
        )

    def _ceph(self, name: str, platform: Platform, space: ComponentNamespace,
              nodes: int) -> list[pulumi.Resource]:
        size = ceph_sizing(nodes)
        operator = platform.release(
            f"{name}-rook-ceph", "rook-ceph", space.name,
            {"image": repository_tag(platform.image("rook-ceph", "operator")),
             "imagePullSecrets": platform.pull_secrets(),
             "csi": {"clusterName": "edge-storage"}},
            self, [space])
        rgw = platform.config.options.storage.object_store == "ceph-rgw"
        # Rook refuses a pool of one copy unless told that it is meant.
        replicated = {"size": size["replicas"], "requireSafeReplicaSize": size["replicas"] > 1}
        cluster = platform.release(
            f"{name}-ceph-cluster", "rook-ceph-cluster", space.name,
            {"operatorNamespace": space.name,
             "cephClusterSpec": {
                 "cephVersion": {"image": platform.image("rook-ceph-cluster", "ceph")},
                 "mon": {"count": size["mons"], "allowMultiplePerNode": False},
                 "mgr": {"count": 1 if nodes < 2 else 2},
                 "storage": {"useAllNodes": True, "useAllDevices": False}},
             "cephBlockPools": [{"name": "replicapool", "spec": {
                 "failureDomain": "host",
                 "replicated": replicated},
                 "storageClass": {"enabled": False}}],
             "cephFileSystems": [],
             "cephObjectStores": [{"name": "objects", "spec": {
                 "metadataPool": {"replicated": replicated},
                 "dataPool": {"replicated": replicated},
                 "gateway": {"port": 80, "instances": 1}},
                 "storageClass": {"enabled": False}}] if rgw else []},
            self, [operator])  # the operator's CRDs before the cluster's custom resources
        return [operator, cluster]

    def _seaweedfs(self, name: str, platform: Platform, space: ComponentNamespace,
                   nodes: int) -> None:
        size = seaweedfs_sizing(nodes)
        config = pulumi.Output.all(self.access_key.result, self.secret_key.result).apply(
            lambda keys: to_json({"identities": [{
                "name": "platform", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                "credentials": [{"accessKey": keys[0], "secretKey": keys[1]}]}]}))
        s3_config = k8s.core.v1.Secret(
            f"{name}-s3-config",
            metadata={"name": "object-store-s3-config", "namespace": space.name},
            string_data={"seaweedfs_s3_config": config},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[space],
                                        additional_secret_outputs=["stringData"]))
        image = platform.image("seaweedfs", "seaweedfs")
        registry, _, _ = image.partition("/")
        platform.release(
            f"{name}-object-store", "seaweedfs", space.name,
            {"global": {"registry": registry + "/",
                        "imageName": image.split("/", 1)[1].rsplit(":", 1)[0],
                        "imageTag": image.rsplit(":", 1)[1],
                        "imagePullSecrets": platform.pull_secret or "",
                        "enableReplication": size["replication"] != "000",
                        "replicationPlacment": size["replication"]},
             "fullnameOverride": "object-store",
             "master": {"replicas": 1, "defaultReplication": size["replication"],
                        "data": {"type": "persistentVolumeClaim", "size": "10Gi",
                                 "storageClass": platform.default_storage_class}},
             "volume": {"replicas": size["volume_replicas"], "dataDirs": [{
                 "name": "data", "type": "persistentVolumeClaim",
                 "size": f"{platform.config.options.storage.object_store_size_gib}Gi",
                 "storageClass": platform.default_storage_class, "maxVolumes": 0}]},
             "filer": {"replicas": 1, "s3": {
                 "enabled": True, "enableAuth": True,
                 "existingConfigSecret": "object-store-s3-config",
                 # The chart's post-install hook creates them.
                 "createBuckets": [{"name": bucket} for bucket in sorted(BUCKETS.values())]}},
             "s3": {"enabled": False}},
            self, [s3_config, *self.classes])
