"""The site's registry login reaches the pull secrets, and never the plan listing."""

from __future__ import annotations

import json

from platform_helpers import Checked, make_config

from blueprint.platform.preview import format_rows, preview_rows, run_program
from blueprint.platform.resolve import registry_auth_json

CANARY = "canary-Pw-7f3k9q"


def test_the_registry_login_reaches_the_pull_secret_and_never_the_listing(
        checked: Checked) -> None:
    auth = registry_auth_json("registry.site.lan:5000", {"registry_credentials": {
        "registry.site.lan:5000": {"username": "edge", "password": CANARY}}})
    assert auth is not None and CANARY in json.loads(auth)["auths"]["registry.site.lan:5000"][
        "password"]

    def override(layer: dict[str, object]) -> None:
        options = layer["options"]
        assert isinstance(options, dict)
        options["registry"] = {"override": "registry.site.lan:5000"}

    run = run_program(make_config(override, registry_auth=auth))
    pull = [item for item in run.by_type("kubernetes:core/v1:Secret")
            if item.inputs.get("type") == "kubernetes.io/dockerconfigjson"]
    checked.that(len(pull) == 9)  # one per component namespace
    checked.that(CANARY in pull[0].inputs["stringData"][".dockerconfigjson"])
    checked.that(CANARY not in format_rows(preview_rows(run)))
