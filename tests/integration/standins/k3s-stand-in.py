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
  k3s kubectl ...            on a server: `get node NAME -o name`, `get nodes`, `cordon`,
                             `uncordon`, `drain`, `annotate`, `delete node` on the cluster's
                             node list, a JSON file the server keeps (no pods, no etcd: a drain
                             only cordons). Elsewhere it fails as kubectl does without an API.

The version below is per build: the lab tests write a second build with another version to
test `blueprint upgrade`.
"""

import fcntl
import json
import os
import socket
import sys
import threading
import time

VERSION = "v1.31.4+k3s1 (STAND-IN, not k3s)"
NODES = "/var/lib/rancher/k3s/server/stand-in-nodes.json"


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
    if update_nodes(change) is None:
        print(f'Error from server (NotFound): nodes "{name}" not found', file=sys.stderr)
        return 1
    done = {"get": "", "cordon": "cordoned", "uncordon": "uncordoned", "drain": "drained",
            "annotate": "annotated", "delete": "deleted"}[verb]
    print(f"node/{name} {done}".rstrip())
    return 0


def server_main(config):
    token = config["token"]
    register(config["node-name"], "control-plane", VERSION)
    server = listen(config["node-ip"], 6443)
    write("/var/lib/rancher/k3s/server/node-token", f"K10standin::server:{token}\n", 0o600)
    write("/etc/rancher/k3s/k3s.yaml",
          "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n"
          "    server: https://127.0.0.1:6443\n  name: default\n"
          "users:\n- name: default\n  user:\n    token: stand-in-admin\n", 0o600)
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
    config = read_config(argv[argv.index("--config") + 1])
    if argv[0] == "server":
        return server_main(config)
    return agent_main(config)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
