"""JupyterHub with a profile list built from the blueprint's notebook catalog."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_random as random

from blueprint.platform.config import NotebookImage
from stacks.platform.common import (
    GPU,
    SITE_CA_FILE,
    ComponentNamespace,
    Platform,
    api_ingress,
    name_tag,
    override_registry,
    protected_ingress,
    site_ca_mount,
    site_ca_trust,
    site_ca_volume,
    trusts_site_ca,
    type_token,
)

# The validation's identity at the hub: a service with its own token, and the user whose
# named servers the profile checks start (created by the check when missing).
VALIDATE_SERVICE = "blueprint-validate"
VALIDATE_USER = "blueprint-validate"
# What the checks do (docs/ai-checks.md): create the user, start and stop its named
# servers, read its model and progress, and reach the started server through the proxy.
CHECK_SCOPES = ("admin:users", "admin:servers", "read:users", "access:servers")
# Each narrowed to the validation user: the token cannot touch anyone else's account or
# servers. TODO: confirm on a first cluster that JupyterHub 5 accepts the filtered
# admin:users for creating that user (the loopback tests used unfiltered scopes).
VALIDATE_SCOPES = [f"{scope}!user={VALIDATE_USER}" for scope in CHECK_SCOPES]
# Paths JupyterHub authenticates itself (its tokens), open without oauth2-proxy: the hub's
# REST API, and the validation user's servers only (their own hub-token check).
API_PATHS = ["/hub/api/", f"/user/{VALIDATE_USER}/"]


def profile(platform: Platform, item: NotebookImage) -> dict[str, Any]:
    """One spawner profile; only a GPU image asks for a GPU."""
    override: dict[str, Any] = {
        "image": override_registry(item.image, platform.config.registry.override),
        "cpu_guarantee": item.cpu / 2, "cpu_limit": item.cpu,
        "mem_guarantee": f"{item.memory_gib / 2:g}G", "mem_limit": f"{item.memory_gib:g}G",
    }
    if item.gpu:
        override["extra_resource_limits"] = {GPU: "1"}
        override["extra_resource_guarantees"] = {GPU: "1"}
    if "tensorboard" in item.frameworks:
        override["environment"] = {"TENSORBOARD_PROXY_URL": "/user/{username}/proxy/6006/"}
    return {"display_name": item.display_name, "slug": item.name,
            "description": ", ".join(item.frameworks) + (" - 1 GPU" if item.gpu else " - CPU"),
            "default": index_is_default(platform, item),
            "kubespawner_override": override}


def index_is_default(platform: Platform, item: NotebookImage) -> bool:
    return platform.config.options.notebooks.catalog[0].name == item.name


def jupyterhub_values(platform: Platform, issuer: str, client_secret: Any,
                      validate_token: Any) -> dict[str, Any]:
    options = platform.config.options.notebooks
    storage_class = options.storage_class or platform.default_storage_class

    def image(role: str) -> dict[str, str]:
        return name_tag(platform.image("jupyterhub", role))

    # Real-time collaboration: JupyterLab's flag; the catalog's images must carry
    # jupyter-collaboration (TODO: verify per image on a connected machine).
    spawner_args = ["--LabApp.collaborative=True"] if options.collaboration else []
    # The hub calls the login provider's token and userinfo URLs itself.
    # TODO: confirm on a cluster that OAuthenticator passes ca_certs to its HTTP client.
    trust = trusts_site_ca(platform)
    oauth_trust = {"http_request_kwargs": {"ca_certs": SITE_CA_FILE}} if trust else {}
    mounts = {"extraVolumes": [site_ca_volume()],
              "extraVolumeMounts": [site_ca_mount()]} if trust else {}
    values: dict[str, Any] = {
        "imagePullSecrets": platform.pull_secrets(),
        "hub": {
            "image": image("hub"),
            "config": {
                "JupyterHub": {"authenticator_class": "generic-oauth"},
                "GenericOAuthenticator": {
                    "client_id": "jupyterhub", "client_secret": client_secret,
                    "oauth_callback_url": f"https://{platform.host('hub')}/hub/oauth_callback",
                    "authorize_url": f"{issuer}/auth", "token_url": f"{issuer}/token",
                    "userdata_url": f"{issuer}/userinfo",
                    "scope": ["openid", "email", "profile", "groups"],
                    "username_claim": "email", "allow_all": True, **oauth_trust,
                },
                "KubeSpawner": {"args": spawner_args},
            },
            "db": {"pvc": {"storageClassName": storage_class}},
            **mounts,
            # The profile checks start one named server per catalog profile.
            "allowNamedServers": True,
            "services": {VALIDATE_SERVICE: {"name": VALIDATE_SERVICE,
                                            "apiToken": validate_token}},
            "loadRoles": {VALIDATE_SERVICE: {
                "description": "blueprint validate: start and stop its own test servers",
                "scopes": VALIDATE_SCOPES, "services": [VALIDATE_SERVICE]}},
        },
        "proxy": {"chp": {"image": image("proxy")},
                  "secretSync": {"image": image("secret_sync")},
                  "service": {"type": "ClusterIP"}},
        "singleuser": {
            "image": {**image("singleuser"), "pullSecrets": [s["name"] for s in
                                                              platform.pull_secrets()]},
            "networkTools": {"image": image("network_tools")},
            "storage": {"type": "dynamic", "capacity": f"{options.storage_gib}Gi",
                        "dynamic": {"storageClass": storage_class}},
            "profileList": [profile(platform, item) for item in options.catalog],
            "cmd": "jupyterhub-singleuser",
        },
        "prePuller": {"hook": {"image": image("image_awaiter")},
                      "pause": {"image": image("pause")}},
        "scheduling": {"userScheduler": {"enabled": False},
                       "userPlaceholder": {"image": image("pause")}},
        "ingress": {"enabled": False},
    }
    return values


class Notebooks(pulumi.ComponentResource):
    """JupyterHub: native OIDC login, and oauth2-proxy in front of its endpoint as well."""

    def __init__(self, name: str, platform: Platform, issuer: str, client_secret: Any,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(type_token("Notebooks"), name, None, opts)
        space = ComponentNamespace(f"{name}-space", platform, "notebooks",
                                   pulumi.ResourceOptions(parent=self))
        token = random.RandomPassword(f"{name}-validate-token", length=48, special=False,
                                      opts=pulumi.ResourceOptions(parent=self))
        values = jupyterhub_values(platform, issuer, client_secret, token.result)
        waits: list[pulumi.Resource] = [space, *platform.storage_ready]
        if trusts_site_ca(platform):
            waits.append(site_ca_trust(platform, f"{name}-site-ca-trust", space.name, self))
        self.release = platform.release(f"{name}-jupyterhub", "jupyterhub", space.name, values,
                                        self, waits)
        host = platform.host("hub")
        protected_ingress(platform, "jupyterhub", space.name, host, "proxy-public", 80, self,
                          [self.release])
        api_ingress(platform, "jupyterhub-api", space.name, host, "proxy-public", 80,
                    API_PATHS, "jupyterhub-tls", self, [self.release])

        # What the validation's JupyterHub checks read (docs/ai-checks.md).
        platform.outputs["jupyterhub_url"] = f"https://{host}"
        platform.outputs["jupyterhub_validate_token"] = pulumi.Output.secret(token.result)
        platform.outputs["jupyterhub_validate_user"] = VALIDATE_USER
        platform.outputs["ai_catalog_profiles"] = [
            item.name for item in platform.config.options.notebooks.catalog]
        self.register_outputs({"namespace": space.name})
