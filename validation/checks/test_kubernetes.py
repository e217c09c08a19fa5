"""Kubernetes checks on the nodes: the cluster's certificates, where k3s and kubeadm keep them.

The cluster-wide checks (nodes ready, API settings) need the cluster's API and are not
written yet; see docs/validation.md.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest
from cryptography import x509

from blueprint.validate.plugin import Probe, expect

log = logging.getLogger(__name__)

# kubeadm's PKI and k3s' server TLS folder, each with its etcd certificates.
PKI_FOLDERS = ("/etc/kubernetes/pki", "/etc/kubernetes/pki/etcd",
               "/var/lib/rancher/k3s/server/tls", "/var/lib/rancher/k3s/server/tls/etcd")
LISTING = " ".join(f"{folder}/*.crt" for folder in PKI_FOLDERS)
DEFAULT_MIN_DAYS = 30


def certificate_expiries(listing: str) -> dict[str, dt.datetime | str]:
    """Per certificate file of `== path` + PEM blocks: its earliest notAfter (UTC), or why
    it could not be read."""
    found: dict[str, dt.datetime | str] = {}
    path, lines = "", []
    for line in [*listing.splitlines(), "== "]:
        if not line.startswith("== "):
            lines.append(line)
            continue
        if path:
            try:
                certificates = x509.load_pem_x509_certificates("\n".join(lines).encode())
                found[path] = min(cert.not_valid_after_utc for cert in certificates)
            except ValueError as exc:
                found[path] = f"not a PEM certificate ({exc})"
        path, lines = line[3:].strip(), []
    return found


def expiring(expiries: dict[str, dt.datetime | str], now: dt.datetime,
             min_days: int) -> list[str]:
    """'path: why' for each certificate that is unreadable or lapses within `min_days`."""
    problems = []
    for path, when in sorted(expiries.items()):
        if isinstance(when, str):
            problems.append(f"{path}: {when}")
        elif when - now < dt.timedelta(days=min_days):
            days = (when - now).days
            if days < 0:
                problems.append(f"{path}: expired on {when:%Y-%m-%d}")
            else:
                problems.append(f"{path}: expires on {when:%Y-%m-%d} (in {days} days)")
    return problems


@pytest.mark.check("kubernetes.certs.expiry")
def test_certificates_not_expiring(node: Probe, expected: dict[str, Any]) -> None:
    if "control-plane" not in expected.get("node_roles", ["control-plane"]):
        pytest.skip("not a control plane: the cluster's certificates live on control planes")
    min_days = int(expected.get("policy", {}).get("certificate_min_days", DEFAULT_MIN_DAYS))
    listing = node.run(f'for f in {LISTING}; do [ -f "$f" ] && echo "== $f" && cat "$f"; '
                       "done; true")
    expiries = certificate_expiries(listing.stdout)
    expect(bool(expiries), seen=f"no certificate in {', '.join(PKI_FOLDERS)}",
           expected="the cluster's certificates on this control plane")
    problems = expiring(expiries, dt.datetime.now(dt.UTC), min_days)
    expect(not problems, seen="; ".join(problems),
           expected=f"every certificate valid for at least {min_days} more days "
                    "(kubeadm: kubeadm certs renew; k3s renews on restart within 90 days)")
    soonest = min(when for when in expiries.values() if isinstance(when, dt.datetime))
    log.info("%d certificates, the first lapses on %s", len(expiries), f"{soonest:%Y-%m-%d}")
