"""Ingress, MetalLB, cert-manager with the site CA, and single sign-on (Dex or external)."""

from __future__ import annotations

import base64
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from stacks.platform.common import (
    SITE_CA_FILE,
    ComponentNamespace,
    Platform,
    registry_image_tag,
    repository_tag,
    site_ca_mount,
    site_ca_trust,
    site_ca_volume,
    trusts_site_ca,
    type_token,
)

# The Secret that carries the site CA's certificate for the validation to trust.
SITE_CA_PUBLIC = "site-ca-public"
# The OIDC clients the platform registers with its provider.
CLIENTS = ("oauth2-proxy", "jupyterhub", "grafana")


class Access(pulumi.ComponentResource):
    """How users reach the platform: TLS from the site CA, and nothing without login."""

    def __init__(self, name: str, platform: Platform,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(type_token("Access"), name, None, opts)
        space = ComponentNamespace(f"{name}-space", platform, "access",
                                   pulumi.ResourceOptions(parent=self))
        ns = space.name

        # Load balancer addresses, then the ingress controller that takes one of them.
        metallb = platform.release(f"{name}-metallb", "metallb", ns, {
            "controller": {"image": repository_tag(platform.image("metallb", "controller"))},
            "speaker": {"image": repository_tag(platform.image("metallb", "speaker")),
                        "frr": {"enabled": False}},
            "imagePullSecrets": platform.pull_secrets(),
        }, self, [space])
        pool = k8s.apiextensions.CustomResource(
            f"{name}-address-pool", api_version="metallb.io/v1beta1", kind="IPAddressPool",
            metadata={"name": "site", "namespace": ns},
            spec={"addresses": platform.config.settings.load_balancer_addresses},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[metallb]))
        k8s.apiextensions.CustomResource(
            f"{name}-l2-advertisement", api_version="metallb.io/v1beta1",
            kind="L2Advertisement", metadata={"name": "site", "namespace": ns},
            spec={"ipAddressPools": ["site"]},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[pool]))
        self.ingress = platform.release(f"{name}-ingress", "ingress-nginx", ns, {
            "controller": {
                "image": registry_image_tag(platform.image("ingress-nginx", "controller")),
                "ingressClassResource": {"name": platform.config.options.access.ingress_class,
                                         "default": True},
                "service": {"type": "LoadBalancer"},
                "metrics": {"enabled": True, "serviceMonitor": {"enabled": False}},
                "admissionWebhooks": {"patch": {"enabled": True}},
            },
            "imagePullSecrets": platform.pull_secrets(),
        }, self, [pool])

        # cert-manager, then a self-signed root that becomes the site CA issuer.
        self.cert_manager = platform.release(f"{name}-cert-manager", "cert-manager", ns, {
            "crds": {"enabled": True},
            "image": repository_tag(platform.image("cert-manager", "controller")),
            "webhook": {"image": repository_tag(platform.image("cert-manager", "webhook"))},
            "cainjector": {"image": repository_tag(platform.image("cert-manager",
                                                                  "cainjector"))},
            "startupapicheck": {"image": repository_tag(
                platform.image("cert-manager", "startupapicheck"))},
            "global": {"imagePullSecrets": platform.pull_secrets()},
        }, self, [space])
        self.site_ca = self._site_ca(name, ns)
        platform.issuer_ready.append(self.site_ca)
        platform.outputs["site_ca_certificate"] = self._site_ca_certificate(name, ns)

        # Single sign-on: a bundled Dex or the site's provider, and oauth2-proxy in front.
        self.issuer_url, secrets = self._identity(name, platform, ns, space)
        platform.outputs["oidc_issuer_url"] = self.issuer_url
        platform.outputs.update({f"oidc_client_secret_{client.replace('-', '_')}":
                                 pulumi.Output.secret(secret.result)
                                 for client, secret in secrets.items()})
        self.client_secrets = secrets
        self._oauth2_proxy(name, platform, ns, secrets["oauth2-proxy"])
        self.register_outputs({"issuer": self.issuer_url})

    def _site_ca(self, name: str, ns: str) -> pulumi.Resource:
        after_crds = pulumi.ResourceOptions(parent=self, depends_on=[self.cert_manager])
        root = k8s.apiextensions.CustomResource(
            f"{name}-selfsigned", api_version="cert-manager.io/v1", kind="ClusterIssuer",
            metadata={"name": "selfsigned"}, spec={"selfSigned": {}}, opts=after_crds)
        ca = k8s.apiextensions.CustomResource(
            f"{name}-site-ca-cert", api_version="cert-manager.io/v1", kind="Certificate",
            metadata={"name": "site-ca", "namespace": ns},
            spec={"isCA": True, "commonName": "edge site CA", "secretName": "site-ca",
                  "duration": "87600h", "privateKey": {"algorithm": "ECDSA", "size": 256},
                  "issuerRef": {"name": "selfsigned", "kind": "ClusterIssuer"}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[root]))
        # TODO: take the site's own CA from its vault when it has one; a generated root has
        # to be distributed to users' browsers by hand.
        return k8s.apiextensions.CustomResource(
            f"{name}-site-ca", api_version="cert-manager.io/v1", kind="ClusterIssuer",
            metadata={"name": "site-ca"}, spec={"ca": {"secretName": "site-ca"}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ca]))

    def _site_ca_certificate(self, name: str, ns: str) -> pulumi.Output[str]:
        """The site CA's certificate (public), which the validation must trust.

        Read from the Secret of a certificate made for that purpose only, so the CA's own
        private key never enters the stack's state (only this unused leaf's key does).
        """
        trust = k8s.apiextensions.CustomResource(
            f"{name}-site-ca-public", api_version="cert-manager.io/v1", kind="Certificate",
            metadata={"name": "site-ca-public", "namespace": ns,
                      # Pulumi waits until cert-manager has issued it and written its Secret.
                      "annotations": {"pulumi.com/waitFor": "condition=Ready"}},
            spec={"secretName": SITE_CA_PUBLIC, "commonName": "site CA distribution",
                  "duration": "87600h",
                  "issuerRef": {"name": "site-ca", "kind": "ClusterIssuer"}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.site_ca]))

        # Read only once it exists: during a first preview its id is unknown and the read
        # is left out instead of failing on a Secret that does not exist yet.
        def read(_: Any) -> pulumi.Output[str]:
            secret = k8s.core.v1.Secret.get(f"{name}-site-ca-public-secret",
                                            f"{ns}/{SITE_CA_PUBLIC}",
                                            opts=pulumi.ResourceOptions(parent=self))
            return pulumi.Output.unsecret(secret.data).apply(
                lambda data: base64.b64decode((data or {}).get("ca.crt", "")).decode())

        return trust.id.apply(read)

    def _identity(self, name: str, platform: Platform, ns: str, space: ComponentNamespace,
                  ) -> tuple[str, dict[str, random.RandomPassword]]:
        secrets = {client: random.RandomPassword(f"{name}-{client}-client-secret", length=32,
                                                 special=False,
                                                 opts=pulumi.ResourceOptions(parent=self))
                   for client in CLIENTS}
        site_sso = platform.config.settings.sso
        if platform.config.options.access.sso == "external":
            if site_sso is None:
                msg = "access.sso external needs platform.sso (issuer_url, client_id) in the site"
                raise ValueError(msg)
            # TODO: the site's provider must know these clients; registering them there is
            # the site's job today, with the secrets from the stack outputs.
            return site_sso.issuer_url, secrets

        issuer = f"https://{platform.host('login')}"
        admin = random.RandomPassword(f"{name}-dex-admin", length=24, special=False,
                                      opts=pulumi.ResourceOptions(parent=self))
        platform.outputs["sso_admin_password"] = pulumi.Output.secret(admin.result)
        clients = [{"id": client, "name": client, "secret": secrets[client].result,
                    "redirectURIs": [self._redirect(platform, client)]} for client in CLIENTS]
        config: dict[str, Any] = {
            "issuer": issuer,
            "storage": {"type": "kubernetes", "config": {"inCluster": True}},
            "oauth2": {"skipApprovalScreen": True},
            "enablePasswordDB": True,
            "staticPasswords": [{"email": f"admin@{platform.domain}", "username": "admin",
                                 "userID": "edge-admin", "hash": admin.bcrypt_hash}],
            "staticClients": clients,
        }
        if site_sso is not None:
            config["connectors"] = [{"type": "oidc", "id": "site", "name": "Site login",
                                     "config": {"issuer": site_sso.issuer_url,
                                                "clientID": site_sso.client_id,
                                                "clientSecret": "$SITE_OIDC_CLIENT_SECRET",
                                                "redirectURI": f"{issuer}/callback"}}]
        platform.release(f"{name}-dex", "dex", ns, {
            "image": repository_tag(platform.image("dex", "dex")),
            "imagePullSecrets": platform.pull_secrets(),
            "config": config,
            "ingress": {"enabled": True, "className":
                        platform.config.options.access.ingress_class,
                        "annotations": {"cert-manager.io/cluster-issuer": "site-ca"},
                        "hosts": [{"host": platform.host("login"),
                                   "paths": [{"path": "/", "pathType": "Prefix"}]}],
                        "tls": [{"hosts": [platform.host("login")], "secretName": "dex-tls"}]},
        }, self, [space, self.site_ca, self.ingress])
        return issuer, secrets

    @staticmethod
    def _redirect(platform: Platform, client: str) -> str:
        return {
            "oauth2-proxy": f"https://{platform.host('auth')}/oauth2/callback",
            "jupyterhub": f"https://{platform.host('hub')}/hub/oauth_callback",
            "grafana": f"https://{platform.host('grafana')}/login/generic_oauth",
        }[client]

    def _oauth2_proxy(self, name: str, platform: Platform, ns: str,
                      client_secret: random.RandomPassword) -> None:
        cookie = random.RandomPassword(f"{name}-cookie-secret", length=32, special=False,
                                       opts=pulumi.ResourceOptions(parent=self))
        groups = platform.config.options.access.sso_groups
        trust: dict[str, Any] = {}
        waits: list[pulumi.Resource] = [self.ingress, self.site_ca]
        if trusts_site_ca(platform):
            waits.append(site_ca_trust(platform, f"{name}-site-ca-trust", ns, self))
            trust = {"extraVolumes": [site_ca_volume()],
                     "extraVolumeMounts": [site_ca_mount()]}
        client_id = "oauth2-proxy"
        if platform.config.options.access.sso == "external" and platform.config.settings.sso:
            client_id = platform.config.settings.sso.client_id
        platform.release(f"{name}-oauth2-proxy", "oauth2-proxy", ns, {
            "fullnameOverride": "oauth2-proxy",
            "image": repository_tag(platform.image("oauth2-proxy", "proxy")),
            "imagePullSecrets": platform.pull_secrets(),
            "config": {"clientID": client_id, "clientSecret": client_secret.result,
                       "cookieSecret": cookie.result},
            "extraArgs": {
                "provider": "oidc", "oidc-issuer-url": self.issuer_url,
                "cookie-domain": f".{platform.domain}",
                "whitelist-domain": f".{platform.domain}",
                "email-domain": "*", "set-xauthrequest": "true",
                "reverse-proxy": "true",
                **({"allowed-group": ",".join(groups)} if groups else {}),
                **({"provider-ca-file": SITE_CA_FILE} if trust else {}),
            },
            **trust,
            "ingress": {"enabled": True,
                        "className": platform.config.options.access.ingress_class,
                        "annotations": {"cert-manager.io/cluster-issuer": "site-ca"},
                        "path": "/oauth2", "pathType": "Prefix",
                        "hosts": [platform.host("auth")],
                        "tls": [{"hosts": [platform.host("auth")],
                                 "secretName": "oauth2-proxy-tls"}]},
        }, self, waits)
