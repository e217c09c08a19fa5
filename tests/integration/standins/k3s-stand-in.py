#!/usr/bin/python3
"""STAND-IN for the k3s release binary (test double of the kubernetes layer's lab tests).

No Kubernetes release can be fetched or run on the lab's machines, so the lab tests serve this
program as the "k3s" release. It is a real long-running service, so the role's mechanics are
really exercised: systemd's notify start, an active unit with a MainPID, ports, the join token.

  k3s server --config FILE   listens on node-ip:6443, writes the node-token and an admin
                             kubeconfig as k3s does, answers joins: a client sends its token
                             and gets "ok" or "denied".
  k3s agent --config FILE    joins the server named in its config with its token (exits 1
                             when denied), then listens on node-ip:10250.
  k3s --version              prints the stand-in's version.
  k3s certificate rotate     as k3s: refused while the server answers; backs up the server's
                             TLS folder to tls-<time> and removes its certificates and keys
                             but the CAs', so that the next start makes new ones.
  k3s kubectl ...            on a server: `get node NAME -o name`, `get nodes`, `cordon`,
                             `uncordon`, `drain`, `annotate`, `delete node` on the cluster's
                             node list, a JSON file the server keeps (no pods, no etcd: a drain
                             only cordons). Elsewhere it fails as kubectl does without an API.
                             `get node NAME -o jsonpath=...Ready...` prints the Ready
                             condition: after each start a server's own Node answers False to
                             the first READY_AFTER_POLLS such questions, then True, as a real
                             node is NotReady for a moment after its API port opens.
                             `get --raw /readyz/etcd` prints "ok" (there is no etcd).

At start the server makes what k3s makes in its TLS folder (with openssl, when the node has
it): CAs once, and the other certificates when missing or within 90 days of expiry (a
year's validity); its admin kubeconfig carries the admin client certificate.

The version below is per build: the lab tests write a second build with another version to
test `blueprint upgrade`.
"""

import base64
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

VERSION = "v1.31.4+k3s1 (STAND-IN, not k3s)"
NODES = "/var/lib/rancher/k3s/server/stand-in-nodes.json"
TLS = "/var/lib/rancher/k3s/server/tls"
CAS = ("client-ca", "server-ca")
CERTS = ("client-admin", "client-kubelet", "serving-kube-apiserver")
RENEW_WITHIN = 90 * 86400
READY_AFTER_POLLS = 2


def read_config(path):
    """The flat `key: value` lines of k3s's config.yaml (lists and comments skipped)."""
    config = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith((" ", "#", "-")) or ":" not in line:
                continue
            key, _, value = line.partition(":")
            config[key.strip()] = value.strip().strip('"')
    return config


def notify_ready():
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"READY=1", address)


def listen(address, port):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((address, port))
    server.listen(16)
    return server


def serve(server, token):
    while True:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(5)
            try:
                given = conn.recv(256).decode().strip()
            except OSError:
                continue
            # "TOKEN<TAB>NODE<TAB>VERSION": an agent that joins registers its node.
            given, _, rest = given.partition("\t")
            name, _, version = rest.partition("\t")
            if given == token and name:
                register(name, "worker", version)
            conn.sendall(b"ok\n" if given == token else b"denied\n")


def write(path, text, mode):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def update_nodes(change):
    """Read-modify-write of the node list under a lock (server thread and kubectl)."""
    os.makedirs(os.path.dirname(NODES), exist_ok=True)
    with open(NODES + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(NODES, encoding="utf-8") as handle:
                nodes = json.load(handle)
        except FileNotFoundError:
            nodes = {}
        result = change(nodes)
        with open(NODES + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(nodes, handle, indent=1, sort_keys=True)
        os.replace(NODES + ".tmp", NODES)
    return result


def register(name, role, version):
    def change(nodes):
        node = nodes.setdefault(name, {"role": role, "unschedulable": False,
                                       "annotations": {}})
        node["version"] = version.split()[0] if version else ""
    update_nodes(change)


def kubectl(args):
    """The few kubectl verbs the product runs, on the stand-in's node list."""
    if not os.path.exists(NODES):
        print("The connection to the server 127.0.0.1:6443 was refused (STAND-IN: no server "
              "on this node)", file=sys.stderr)
        return 1
    words = [a for a in args if not a.startswith("-")]
    verb = words[0] if words else ""
    if verb == "get" and words[1:2] == ["/readyz/etcd"]:
        print("ok")
        return 0
    ready_query = any(word.startswith("jsonpath=") and "Ready" in word for word in words)
    if verb == "get" and words[1:2] in (["nodes"], ["node"]) and len(words) == 2:
        nodes = update_nodes(lambda nodes: dict(nodes))
        print("NAME STATUS ROLES VERSION")
        for name, node in sorted(nodes.items()):
            status = "Ready,SchedulingDisabled" if node["unschedulable"] else "Ready"
            print(name, status, node["role"], node["version"])
        return 0
    names = words[2:] if verb in ("get", "delete") else words[1:]
    if verb == "annotate":
        names = [words[2]]
    if not names:
        print(f"STAND-IN kubectl: unsupported: {' '.join(args)}", file=sys.stderr)
        return 2
    name = names[0]

    def change(nodes):
        node = nodes.get(name)
        if node is None:
            return None
        if ready_query:
            polls = node.get("not_ready_polls", 0)
            node["not_ready_polls"] = max(0, polls - 1)
            return "False" if polls else "True"
        if verb in ("cordon", "drain"):
            node["unschedulable"] = True
        elif verb == "uncordon":
            node["unschedulable"] = False
        elif verb == "annotate":
            key, _, value = words[3].partition("=")
            node["annotations"][key] = value
        elif verb == "delete":
            del nodes[name]
        return node

    if verb not in ("get", "cordon", "uncordon", "drain", "annotate", "delete"):
        print(f"STAND-IN kubectl: unsupported: {' '.join(args)}", file=sys.stderr)
        return 2
    answer = update_nodes(change)
    if answer is None:
        print(f'Error from server (NotFound): nodes "{name}" not found', file=sys.stderr)
        return 1
    if ready_query:
        print(answer, end="")
        return 0
    done = {"get": "", "cordon": "cordoned", "uncordon": "uncordoned", "drain": "drained",
            "annotate": "annotated", "delete": "deleted"}[verb]
    print(f"node/{name} {done}".rstrip())
    return 0


def ensure_certificates():
    if shutil.which("openssl") is None:
        return
    os.makedirs(TLS, mode=0o700, exist_ok=True)
    for name in CAS + CERTS:
        crt = f"{TLS}/{name}.crt"
        if os.path.exists(crt) and (name in CAS or subprocess.run(
                ["openssl", "x509", "-checkend", str(RENEW_WITHIN), "-noout", "-in", crt],
                capture_output=True).returncode == 0):
            continue
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                        "3650" if name in CAS else "365", "-subj", f"/CN=k3s-{name}",
                        "-keyout", f"{TLS}/{name}.key", "-out", crt],
                       check=True, capture_output=True)


def rotate(argv):
    path = "/etc/rancher/k3s/config.yaml"
    if "--config" in argv:
        path = argv[argv.index("--config") + 1]
    address = read_config(path).get("node-ip", "127.0.0.1")
    try:
        socket.create_connection((address, 6443), timeout=2).close()
        print("k3s is running: stop it before rotating certificates", file=sys.stderr)
        return 1
    except OSError:
        pass
    if not os.path.isdir(TLS):
        print("no server certificates on this node (STAND-IN agent keeps none)")
        return 0
    backup = f"{TLS}-{int(time.time())}"
    shutil.copytree(TLS, backup)
    for name in os.listdir(TLS):
        stem = name.rsplit(".", 1)[0]
        if name.endswith((".crt", ".key")) and not stem.endswith("-ca"):
            os.remove(os.path.join(TLS, name))
    print(f"certificates backed up to {backup} and removed; start k3s to make new ones")
    return 0


def admin_kubeconfig():
    user = "    token: stand-in-admin\n"
    try:
        with open(f"{TLS}/client-admin.crt", "rb") as handle:
            data = base64.b64encode(handle.read()).decode()
        user = f"    client-certificate-data: {data}\n"
    except OSError:
        pass
    return ("apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n"
            "    server: https://127.0.0.1:6443\n  name: default\n"
            "users:\n- name: default\n  user:\n" + user)


def server_main(config):
    token = config["token"]
    register(config["node-name"], "control-plane", VERSION)
    update_nodes(lambda nodes: nodes[config["node-name"]].update(
        not_ready_polls=READY_AFTER_POLLS))
    ensure_certificates()
    server = listen(config["node-ip"], 6443)
    write("/var/lib/rancher/k3s/server/node-token", f"K10standin::server:{token}\n", 0o600)
    write("/etc/rancher/k3s/k3s.yaml", admin_kubeconfig(), 0o600)
    notify_ready()
    serve(server, token)


def agent_main(config):
    host = config["server"].split("//", 1)[1].rsplit(":", 1)[0].strip("[]")
    deadline = time.monotonic() + 120
    while True:
        try:
            with socket.create_connection((host, 6443), timeout=5) as conn:
                conn.sendall(f"{config['token']}\t{config['node-name']}\t{VERSION}\n".encode())
                answer = conn.recv(16).decode().strip()
            break
        except OSError:
            if time.monotonic() > deadline:
                print("stand-in k3s agent: server not reachable", file=sys.stderr)
                return 1
            time.sleep(1)
    if answer != "ok":
        print("stand-in k3s agent: the server refused the token", file=sys.stderr)
        return 1
    server = listen(config["node-ip"], 10250)
    notify_ready()
    threading.Event().wait() if server else None
    return 0


def main(argv):
    if "--version" in argv:
        print(VERSION)
        return 0
    if argv[:1] == ["kubectl"]:
        return kubectl(argv[1:])
    if argv[:2] == ["certificate", "rotate"]:
        return rotate(argv)
    config = read_config(argv[argv.index("--config") + 1])
    if argv[0] == "server":
        return server_main(config)
    return agent_main(config)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
