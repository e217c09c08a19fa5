#!/usr/bin/python3
"""STAND-IN for kubectl on a kubeadm control plane (test double of the CNI lab test).

No Kubernetes API server can run on the lab's machines, so the lab test installs this program
as the role's kubectl. It records what the role applies and answers node readiness, nothing
more; it validates nothing of the manifests' content.

  kubectl --kubeconfig FILE apply --server-side --field-manager=NAME [--force-conflicts] -f F
      refused without --server-side or a field manager, or without the kubeconfig file;
      appends "<sha256 of F> <F> <manager>" to /var/lib/kubectl-stand-in/applied.log.
  kubectl --kubeconfig FILE wait --for=condition=Established ... crd/NAME...
      met once something was applied; "no matching resources" before.
  kubectl --kubeconfig FILE wait --for=condition=Ready node --all --timeout=Ns
      met, unless /var/lib/kubectl-stand-in/not-ready exists: then it fails as kubectl does
      when the time is up (at once: the stand-in does not sleep the timeout away).
  kubectl --kubeconfig FILE get nodes|pods --no-headers [--all-namespaces]
      this node, Ready or NotReady; one calico-node pod, Running or ImagePullBackOff.
  kubectl --kubeconfig FILE get secrets --namespace=kube-system --selector=owner=helm,... -o name
      helm's cilium release secret once the stand-in cilium CLI recorded a call
      (/var/lib/kubectl-stand-in/cilium.log), nothing before.
"""

import hashlib
import os
import socket
import sys

STATE = "/var/lib/kubectl-stand-in"


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "--kubeconfig" or not os.path.exists(argv[1]):
        print("error: the stand-in kubectl needs --kubeconfig with an existing file",
              file=sys.stderr)
        return 1
    args = argv[2:]
    verb = args[0] if args else ""
    os.makedirs(STATE, exist_ok=True)
    log = os.path.join(STATE, "applied.log")
    ready = not os.path.exists(os.path.join(STATE, "not-ready"))
    node = socket.gethostname()

    if verb == "apply":
        managers = [arg.split("=", 1)[1] for arg in args if arg.startswith("--field-manager=")]
        if "--server-side" not in args or not managers:
            print("error: the stand-in accepts only server-side apply with a field manager",
                  file=sys.stderr)
            return 1
        path = args[args.index("-f") + 1]
        with open(path, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
        with open(log, "a") as handle:
            handle.write(f"{digest} {path} {managers[0]}\n")
        print(f"{path} serverside-applied (STAND-IN)")
        return 0

    if verb == "wait" and "--for=condition=Established" in args:
        if not os.path.exists(log):
            print("error: no matching resources found", file=sys.stderr)
            return 1
        for name in args[1:]:
            if name.startswith("crd/"):
                print(f"customresourcedefinition.apiextensions.k8s.io/{name[4:]} condition met")
        return 0

    if verb == "wait" and "--for=condition=Ready" in args:
        if not ready:
            print(f"error: timed out waiting for the condition on nodes/{node}", file=sys.stderr)
            return 1
        print(f"node/{node} condition met")
        return 0

    if verb == "get" and args[1:2] == ["nodes"]:
        print(f"{node}   {'Ready' if ready else 'NotReady'}   control-plane   1m   v1.31.4")
        return 0

    if verb == "get" and args[1:2] == ["pods"]:
        status = "Running" if ready else "ImagePullBackOff"
        print(f"calico-system   calico-node-stand-in   {'1/1' if ready else '0/1'}   {status}"
              "   0   1m")
        return 0

    if verb == "get" and args[1:2] == ["secrets"]:
        if os.path.exists(os.path.join(STATE, "cilium.log")):
            print("secret/sh.helm.release.v1.cilium.v1")
        return 0

    print(f"error: the stand-in kubectl does not answer {' '.join(args)!r}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
