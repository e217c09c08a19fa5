"""kubernetes.certs.expiry: what the check makes of the certificate files a node lists."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from tests.helpers.x509certs import self_signed_pem as pem

CHECKS = Path(__file__).resolve().parents[3] / "validation" / "checks"
sys.path.insert(0, str(CHECKS))

import test_kubernetes  # noqa: E402  (the check modules live outside the package)

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


def test_each_file_gets_its_earliest_expiry_and_a_broken_one_its_reason() -> None:
    soon, late = NOW + dt.timedelta(days=10), NOW + dt.timedelta(days=3650)
    listing = (f"== /etc/kubernetes/pki/apiserver.crt\n{pem('kube-apiserver', soon)}"
               f"== /etc/kubernetes/pki/ca.crt\n{pem('kubernetes', late)}"
               f"== /etc/kubernetes/pki/bundle.crt\n{pem('a', late)}{pem('b', soon)}"
               "== /etc/kubernetes/pki/broken.crt\nnot a certificate\n")

    found = test_kubernetes.certificate_expiries(listing)

    assert found["/etc/kubernetes/pki/apiserver.crt"] == soon.replace(microsecond=0)
    assert found["/etc/kubernetes/pki/ca.crt"] == late.replace(microsecond=0)
    assert found["/etc/kubernetes/pki/bundle.crt"] == soon.replace(microsecond=0)
    assert str(found["/etc/kubernetes/pki/broken.crt"]).startswith("not a PEM certificate")


def test_certificates_within_the_policy_days_are_named_with_their_date() -> None:
    expiries: dict[str, dt.datetime | str] = {
        "/var/lib/rancher/k3s/server/tls/serving-kube-apiserver.crt": NOW + dt.timedelta(days=12),
        "/var/lib/rancher/k3s/server/tls/client-ca.crt": NOW + dt.timedelta(days=3650),
        "/var/lib/rancher/k3s/server/tls/old.crt": NOW - dt.timedelta(days=2),
    }

    problems = test_kubernetes.expiring(expiries, NOW, min_days=30)

    assert problems == [
        "/var/lib/rancher/k3s/server/tls/old.crt: expired on 2026-12-02",
        "/var/lib/rancher/k3s/server/tls/serving-kube-apiserver.crt: expires on 2026-12-16 "
        "(in 12 days)",
    ]
    assert test_kubernetes.expiring(expiries, NOW, min_days=5) == [
        "/var/lib/rancher/k3s/server/tls/old.crt: expired on 2026-12-02"]


def test_no_listing_is_no_certificate() -> None:
    assert test_kubernetes.certificate_expiries("") == {}
