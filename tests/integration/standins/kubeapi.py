"""STAND-IN for a Kubernetes API server (test double of the cluster checks' tests).

No Kubernetes can run on this project's machines, so the tests of validation/kube/ speak to
this program instead. It is a real HTTPS server with its own CA and server certificate, that
accepts only the bearer token it was given (anonymous requests get 401 unless the fault
`anonymous_allowed` is on). It serves the endpoints the cluster checks use from a cluster
snapshot (a multi-document YAML of Nodes, Pods, Services, EndpointSlices, Endpoints,
StorageClasses, Namespaces), and every object it serves or accepts is validated against the
Kubernetes OpenAPI schema (kubernetes-validate): an invalid one is answered 422 and written to
`violations.log` in the state folder, which the tests assert empty.

For the PVC round trip it plays provisioner and kubelet: a claim is bound when a pod uses it
(its volume is a folder under the state folder), and the pod's container command really runs,
in bubblewrap's private namespaces with the host's /usr read-only and the volume bound at the
container's mountPath; the image is not pulled (the host's /usr stands in for it). Its output
is the pod's log, its exit code the pod's phase.

    kubeapi.py --snapshot FILE --state DIR --token-file FILE [--fault NAME]...

It listens on 127.0.0.1 on a free port, writes `ca.crt` and then `port` into the state folder
when ready, and runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import hmac
import ipaddress
import json
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SCHEMA_VERSION = kubernetes_validate.latest_version()
POD_RUN_TIMEOUT = 60

FAULTS = {
    "node_not_ready": "node worker-1 reports Ready=False (KubeletNotReady)",
    "crashloop_pod": "pod kube-proxy-x7k2p in kube-system crash-loops",
    "no_default_storage_class": "no StorageClass carries the default annotation",
    "two_default_storage_classes": "local-path and slow both carry the default annotation",
    "pvc_never_binds": "no claim is ever bound; pods that use one stay Pending",
    "volume_not_kept": "every pod gets a fresh, empty volume folder",
    "gpu_allocatable_zero": "node gpu-1 reports allocatable nvidia.com/gpu 0",
    "dns_endpoints_not_ready": "coredns fails its readiness probe: DNS endpoints not ready",
    "anonymous_allowed": "requests without credentials are served",
}

# plural -> (apiVersion, kind, namespaced)
RESOURCES = {
    "nodes": ("v1", "Node", False),
    "namespaces": ("v1", "Namespace", False),
    "pods": ("v1", "Pod", True),
    "services": ("v1", "Service", True),
    "endpoints": ("v1", "Endpoints", True),
    "persistentvolumeclaims": ("v1", "PersistentVolumeClaim", True),
    "endpointslices": ("discovery.k8s.io/v1", "EndpointSlice", True),
    "storageclasses": ("storage.k8s.io/v1", "StorageClass", False),
}
PLURAL = {kind: plural for plural, (_, kind, _) in RESOURCES.items()}
PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>log))?$"
)
DEFAULT_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SchemaViolation(Exception):
    """An object does not match the Kubernetes OpenAPI schema."""


def validate(obj: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        first = str(exc).splitlines()[0]
        where = f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}"
        raise SchemaViolation(f"{where}: {first}") from None


# --- the snapshot and its faults ----------------------------------------------------------


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise SystemExit(f"kubeapi stand-in: the snapshot has no {kind} {name}")


def apply_faults(objects: list[dict[str, Any]], faults: set[str]) -> None:
    """Change the snapshot as the chosen faults say (the run-time ones act later)."""
    if "node_not_ready" in faults:
        node = find(objects, "Node", "worker-1")
        for condition in node["status"]["conditions"]:
            if condition["type"] == "Ready":
                condition.update(status="False", reason="KubeletNotReady",
                                 message="container runtime network not ready: cni not initialized")
    if "crashloop_pod" in faults:
        pod = find(objects, "Pod", "kube-proxy-x7k2p")
        status = pod["status"]["containerStatuses"][0]
        status.update(ready=False, started=False, restartCount=7,
                      state={"waiting": {"reason": "CrashLoopBackOff",
                                         "message": "back-off 5m0s restarting failed container"}})
        pod["status"]["conditions"][1].update(status="False", reason="ContainersNotReady")
    if "no_default_storage_class" in faults:
        find(objects, "StorageClass", "local-path")["metadata"]["annotations"].pop(
            DEFAULT_ANNOTATION, None)
    if "two_default_storage_classes" in faults:
        find(objects, "StorageClass", "slow")["metadata"].setdefault("annotations", {})[
            DEFAULT_ANNOTATION] = "true"
    if "gpu_allocatable_zero" in faults:
        find(objects, "Node", "gpu-1")["status"]["allocatable"]["nvidia.com/gpu"] = "0"
    if "dns_endpoints_not_ready" in faults:
        pod = find(objects, "Pod", "coredns-6799fbcd5-9xq4z")
        pod["status"]["containerStatuses"][0]["ready"] = False
        pod["status"]["conditions"][1].update(status="False", reason="ContainersNotReady")
        sliced = find(objects, "EndpointSlice", "kube-dns-8mvlg")
        for endpoint in sliced["endpoints"]:
            endpoint["conditions"] = {"ready": False, "serving": False, "terminating": False}
        endpoints = find(objects, "Endpoints", "kube-dns")
        for subset in endpoints["subsets"]:
            subset["notReadyAddresses"] = subset.pop("addresses", [])


# --- certificates -------------------------------------------------------------------------


def make_certificates(state: Path) -> tuple[Path, Path]:
    """A CA of the stand-in's own, and a server certificate for 127.0.0.1 it signed."""
    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    end = start + dt.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("kubeapi-stand-in-ca"))
          .issuer_name(name("kubeapi-stand-in-ca")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(start)
          .not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                       crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())

    cert = (x509.CertificateBuilder().subject_name(name("kube-apiserver"))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    (state / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_pem = state / "server.pem"
    server_pem.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()))
    server_pem.chmod(0o600)
    return state / "ca.crt", server_pem


# --- the cluster --------------------------------------------------------------------------


class Cluster:
    """The objects the stand-in holds, and its provisioner and kubelet."""

    def __init__(self, objects: list[dict[str, Any]], faults: set[str], state: Path) -> None:
        self.lock = threading.Lock()
        self.faults = faults
        self.state = state
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str], str] = {}
        for obj in objects:
            self._stamp(obj)
            self.objects[self.key(obj)] = obj

    @staticmethod
    def key(obj: dict[str, Any]) -> tuple[str, str, str]:
        meta = obj["metadata"]
        return PLURAL[obj["kind"]], meta.get("namespace", ""), meta["name"]

    @staticmethod
    def _stamp(obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now())
        meta.setdefault("resourceVersion", "1")

    def violation(self, text: str) -> None:
        with open(self.state / "violations.log", "a", encoding="utf-8") as out:
            out.write(text + "\n")
        print(f"SCHEMA VIOLATION: {text}", file=sys.stderr, flush=True)

    def list(self, plural: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        wanted = dict(part.split("=", 1) for part in selector.split(",") if "=" in part)
        with self.lock:
            found = [
                copy.deepcopy(obj) for (kind, ns, _), obj in sorted(self.objects.items())
                if kind == plural and (not namespace or ns == namespace)
                and all(obj["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
            ]
        return found

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self.objects.get((plural, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def create(self, plural: str, namespace: str, obj: dict[str, Any]) -> dict[str, Any] | None:
        meta = obj.setdefault("metadata", {})
        if namespace:
            meta["namespace"] = namespace
        self._stamp(obj)
        if plural == "namespaces":
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
        if plural == "persistentvolumeclaims":
            obj["status"] = {"phase": "Pending"}
        if plural == "pods":
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        with self.lock:
            if self.key(obj) in self.objects:
                return None
            self.objects[self.key(obj)] = obj
        if plural == "pods":
            threading.Thread(target=self.kubelet, args=(namespace, meta["name"]),
                             daemon=True).start()
        return copy.deepcopy(obj)

    def delete_namespace(self, name: str) -> dict[str, Any] | None:
        with self.lock:
            namespace = self.objects.pop(("namespaces", "", name), None)
            for key in [k for k in self.objects if k[1] == name]:
                del self.objects[key]
        shutil.rmtree(self.state / "volumes" / name, ignore_errors=True)
        if namespace is not None:
            namespace["status"] = {"phase": "Terminating"}
            namespace["metadata"]["deletionTimestamp"] = now()
        return namespace

    def _update(self, plural: str, namespace: str, name: str, change: Any) -> None:
        with self.lock:
            obj = self.objects.get((plural, namespace, name))
            if obj is None:
                return
            change(obj)
            obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)

    def default_class(self) -> str | None:
        classes = self.list("storageclasses", "", "")
        for sc in classes:
            if sc["metadata"].get("annotations", {}).get(DEFAULT_ANNOTATION) == "true":
                return str(sc["metadata"]["name"])
        return None

    def bind(self, namespace: str, claim_name: str) -> str | None:
        """Bind the claim as a provisioner would; its volume's folder, or None (pending)."""
        claim = self.get("persistentvolumeclaims", namespace, claim_name)
        if claim is None or "pvc_never_binds" in self.faults:
            return None
        class_name = claim["spec"].get("storageClassName") or self.default_class()
        if class_name is None or self.get("storageclasses", "", class_name) is None:
            return None
        volume = f"pvc-{claim['metadata']['uid']}"

        def bound(obj: dict[str, Any]) -> None:
            obj["spec"].update(volumeName=volume, storageClassName=class_name)
            obj["status"] = {
                "phase": "Bound",
                "accessModes": obj["spec"]["accessModes"],
                "capacity": {"storage": obj["spec"]["resources"]["requests"]["storage"]},
            }

        self._update("persistentvolumeclaims", namespace, claim_name, bound)
        folder = self.state / "volumes" / namespace / volume
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder)

    def kubelet(self, namespace: str, name: str) -> None:
        """Bind the pod's claims, run its one container under bubblewrap, record the end."""
        pod = self.get("pods", namespace, name)
        if pod is None:
            return
        container = pod["spec"]["containers"][0]
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                  for v in pod["spec"].get("volumes", []) if "persistentVolumeClaim" in v}
        mounts: list[tuple[str, str]] = []
        for mount in container.get("volumeMounts", []):
            if mount["name"] not in claims:
                continue
            folder = self.bind(namespace, claims[mount["name"]])
            if folder is None:
                self._update("pods", namespace, name, unschedulable)
                return
            if "volume_not_kept" in self.faults:
                folder = str(Path(folder) / uuid.uuid4().hex)
                Path(folder).mkdir()
            mounts.append((folder, mount["mountPath"]))

        started = now()
        self._update("pods", namespace, name, lambda obj: running(obj, container, started))
        command = [*container.get("command", []), *container.get("args", [])]
        bwrap = ["bwrap", "--unshare-all", "--die-with-parent", "--clearenv",
                 "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
                 "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
                 "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
                 "--symlink", "usr/sbin", "/sbin", "--proc", "/proc", "--dev", "/dev",
                 "--tmpfs", "/tmp"]
        for folder, mount_path in mounts:
            bwrap += ["--bind", folder, mount_path]
        try:
            done = subprocess.run([*bwrap, "--", *command], capture_output=True, text=True,
                                  timeout=POD_RUN_TIMEOUT)
            code, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired:
            code, output = 137, "killed: ran past the stand-in's limit\n"
        with self.lock:
            self.logs[(namespace, name)] = output
        self._update("pods", namespace, name,
                     lambda obj: ended(obj, container, started, code))


def unschedulable(pod: dict[str, Any]) -> None:
    pod["status"]["conditions"] = [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "lastTransitionTime": now(),
        "message": "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
    }]


def running(pod: dict[str, Any], container: dict[str, Any], started: str) -> None:
    pod["spec"]["nodeName"] = "worker-2"
    pod["status"].update(phase="Running", startTime=started, containerStatuses=[{
        "name": container["name"], "image": container["image"], "imageID": "",
        "ready": True, "started": True, "restartCount": 0,
        "state": {"running": {"startedAt": started}},
    }])


def ended(pod: dict[str, Any], container: dict[str, Any], started: str, code: int) -> None:
    pod["status"]["phase"] = "Succeeded" if code == 0 else "Failed"
    pod["status"]["containerStatuses"] = [{
        "name": container["name"], "image": container["image"], "imageID": "",
        "ready": False, "started": False, "restartCount": 0,
        "state": {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                 "startedAt": started, "finishedAt": now()}},
    }]


# --- HTTP -----------------------------------------------------------------------------------


def status_object(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class Handler(BaseHTTPRequestHandler):
    cluster: Cluster
    token: str

    def log_message(self, format: str, *args: Any) -> None:
        print(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else '?'}",
              file=sys.stderr, flush=True)

    def send_json(self, code: int, obj: dict[str, Any]) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_object(self, code: int, obj: dict[str, Any]) -> None:
        """Serve an object or list after checking it against the schema."""
        try:
            validate(obj)
        except SchemaViolation as exc:
            self.cluster.violation(f"served {exc}")
            self.send_json(422, status_object(422, "Invalid", f"stand-in served {exc}"))
            return
        self.send_json(code, obj)

    def authorised(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header and "anonymous_allowed" in self.cluster.faults:
            return True
        given = header.removeprefix("Bearer ").strip()
        if header.startswith("Bearer ") and hmac.compare_digest(given, self.token):
            return True
        self.send_json(401, status_object(401, "Unauthorized", "Unauthorized"))
        return False

    def route(self) -> tuple[re.Match[str], str, str, str, str] | None:
        url = urlsplit(self.path)
        match = PATH.match(url.path)
        if match is None or match["plural"] not in RESOURCES:
            self.send_json(404, status_object(404, "NotFound", "the server could not find "
                                                               "the requested resource"))
            return None
        api_version = RESOURCES[match["plural"]][0]
        asked = "v1" if match["core"] else f"{match['group']}/{match['version']}"
        if asked != api_version:
            self.send_json(404, status_object(404, "NotFound", "no such group/version"))
            return None
        selector = parse_qs(url.query).get("labelSelector", [""])[0]
        return match, match["plural"], match["ns"] or "", match["name"] or "", selector

    def not_found(self, plural: str, name: str) -> None:
        self.send_json(404, status_object(404, "NotFound", f'{plural} "{name}" not found'))

    def do_GET(self) -> None:
        if not self.authorised():
            return
        if urlsplit(self.path).path in ("/api", "/api/"):
            self.send_json(200, {"kind": "APIVersions", "versions": ["v1"],
                                 "serverAddressByClientCIDRs": [
                                     {"clientCIDR": "0.0.0.0/0",
                                      "serverAddress": "127.0.0.1:6443"}]})
            return
        routed = self.route()
        if routed is None:
            return
        match, plural, namespace, name, selector = routed
        api_version, kind, _ = RESOURCES[plural]
        if match["sub"] == "log":
            if self.cluster.get(plural, namespace, name) is None:
                self.not_found(plural, name)
                return
            with self.cluster.lock:
                text = self.cluster.logs.get((namespace, name), "")
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if name:
            obj = self.cluster.get(plural, namespace, name)
            if obj is None:
                self.not_found(plural, name)
            else:
                self.send_object(200, obj)
            return
        items = self.cluster.list(plural, namespace, selector)
        for item in items:
            # A list's items carry no kind or apiVersion, as the API serves them.
            item.pop("kind", None)
            item.pop("apiVersion", None)
        self.send_object(200, {"kind": f"{kind}List", "apiVersion": api_version,
                               "metadata": {"resourceVersion": "1"}, "items": items})

    def do_POST(self) -> None:
        if not self.authorised():
            return
        routed = self.route()
        if routed is None:
            return
        _, plural, namespace, _, _ = routed
        length = int(self.headers.get("Content-Length", "0"))
        try:
            obj = json.loads(self.rfile.read(length))
            validate(obj)
        except (json.JSONDecodeError, SchemaViolation) as exc:
            self.cluster.violation(f"accepted {exc}")
            self.send_json(422, status_object(422, "Invalid", f"stand-in refused {exc}"))
            return
        _, kind, namespaced = RESOURCES[plural]
        if obj.get("kind") != kind or namespaced != bool(namespace):
            self.send_json(400, status_object(400, "BadRequest", f"expected a {kind}"))
            return
        if namespaced and self.cluster.get("namespaces", "", namespace) is None:
            self.not_found("namespaces", namespace)
            return
        created = self.cluster.create(plural, namespace, obj)
        if created is None:
            self.send_json(409, status_object(409, "AlreadyExists", "already exists"))
            return
        self.send_object(201, created)

    def do_DELETE(self) -> None:
        if not self.authorised():
            return
        routed = self.route()
        if routed is None:
            return
        _, plural, _, name, _ = routed
        if plural != "namespaces" or not name:
            self.send_json(405, status_object(405, "MethodNotAllowed", "not in the stand-in"))
            return
        deleted = self.cluster.delete_namespace(name)
        if deleted is None:
            self.not_found(plural, name)
        else:
            self.send_object(200, deleted)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", required=True, type=Path)
    parser.add_argument("--state", required=True, type=Path)
    parser.add_argument("--token-file", required=True, type=Path)
    parser.add_argument("--fault", action="append", default=[], choices=sorted(FAULTS))
    args = parser.parse_args()

    objects = [obj for obj in yaml.safe_load_all(args.snapshot.read_text()) if obj]
    faults = set(args.fault)
    apply_faults(objects, faults)
    for obj in objects:
        try:
            validate(obj)
        except SchemaViolation as exc:
            print(f"kubeapi stand-in: the snapshot is not valid: {exc}", file=sys.stderr)
            return 2

    args.state.mkdir(parents=True, exist_ok=True)
    _, server_pem = make_certificates(args.state)
    Handler.cluster = Cluster(objects, faults, args.state)
    Handler.token = args.token_file.read_text().strip()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server_pem)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())

    (args.state / "port").write_text(str(server.server_address[1]))
    print(f"kubeapi stand-in on 127.0.0.1:{server.server_address[1]}, faults: "
          f"{', '.join(sorted(faults)) or 'none'}", file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
