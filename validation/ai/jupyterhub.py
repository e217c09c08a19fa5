"""JupyterHub: the hub answers, and one named server per catalog profile starts and stops.

Profiles are asked for the way KubeSpawner takes them over the REST API: user_options
{"profile": "<slug>"} on POST /hub/api/users/<user>/servers/<name>. The hub must allow named
servers (c.JupyterHub.allow_named_servers = True) and the token needs the scopes admin:users,
servers and read:users for the validation user.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from urllib.parse import quote

import httpx

from blueprint.secrets import REDACTOR
from validation.ai.config import JupyterHubEndpoint, tls_verify
from validation.ai.result import (
    AiCheckResult,
    CheckFailure,
    Exchange,
    Recorder,
    excerpt,
    run_check,
)

log = logging.getLogger(__name__)

STOP_TIMEOUT = 120.0


def server_name(profile: str) -> str:
    """The named server a profile's check starts: 'bpv-' and the profile's slug."""
    return "bpv-" + re.sub(r"[^a-z0-9-]+", "-", profile.lower()).strip("-")[:40]


def _hub(recorders: list[Recorder], endpoint: JupyterHubEndpoint) -> Recorder:
    token = endpoint.token.reveal()
    hub = Recorder(str(endpoint.url), headers={"Authorization": f"token {token}"},
                   verify=tls_verify(endpoint.verify_tls))
    recorders.append(hub)
    return hub


def check_health(endpoint: JupyterHubEndpoint) -> AiCheckResult:
    """The hub's API answers with its version, and the token is accepted."""

    def body(recorders: list[Recorder]) -> str:
        hub = _hub(recorders, endpoint)
        info = hub.json("GET", "/hub/api/")
        hub.json("GET", "/hub/api/user")
        return f"JupyterHub {info.get('version', '?')} answers; the token is accepted"

    return run_check("ai.jupyterhub.health", body)


def check_profile(endpoint: JupyterHubEndpoint, profile: str) -> AiCheckResult:
    """Start a named server with `profile`, wait until it serves, then stop it."""

    def body(recorders: list[Recorder]) -> str:
        hub = _hub(recorders, endpoint)
        user = quote(endpoint.user, safe="")
        name = server_name(profile)
        server_path = f"/hub/api/users/{user}/servers/{name}"

        # The validation user is created when missing; a server left by a crash is stopped.
        found = hub.request("GET", f"/hub/api/users/{user}", expect=(200, 404))
        if found.status_code == 404:
            hub.request("POST", f"/hub/api/users/{user}", expect=(201,))
        elif name in found.json().get("servers", {}):
            _stop(hub, endpoint.user, name)

        started = time.monotonic()
        # A spawn that fails at once answers 500; the progress events then say why.
        hub.request("POST", server_path, json={"profile": profile}, expect=(201, 202, 500))
        try:
            url = _wait_ready(hub, endpoint, name)
            # The proxy routes to the server, and the server's own API answers.
            status = hub.json("GET", f"{url.rstrip('/')}/api")
            took = time.monotonic() - started
            version = status.get("version", "?")
        except CheckFailure:
            with contextlib.suppress(CheckFailure):
                _stop(hub, endpoint.user, name)
            raise
        _stop(hub, endpoint.user, name)
        return (
            f"profile {profile}: server {endpoint.user}/{name} started in {took:.0f} s, "
            f"answered (jupyter_server {version}) and stopped"
        )

    return run_check(f"ai.jupyterhub.profile.{profile}", body)


def _wait_ready(hub: Recorder, endpoint: JupyterHubEndpoint, name: str) -> str:
    """Follow the spawn's progress events until ready (the server's URL) or failed."""
    user = quote(endpoint.user, safe="")
    path = f"/hub/api/users/{user}/servers/{name}/progress"
    url = str(hub.client.base_url) + path
    last: dict[str, object] = {}
    try:
        with hub.client.stream(
            "GET", path, timeout=httpx.Timeout(30.0, read=endpoint.spawn_timeout)
        ) as events:
            if events.status_code != 200:
                text = excerpt(events.read().decode(errors="replace"))
                hub.exchanges.append(Exchange("GET", url, events.status_code, text))
                msg = f"GET {url} answered HTTP {events.status_code}: {text}"
                raise CheckFailure(msg, "the spawn's progress events")
            for line in events.iter_lines():
                if not line.startswith("data:"):
                    continue
                last = json.loads(line.removeprefix("data:").strip())
                if last.get("ready"):
                    hub.exchanges.append(Exchange("GET", url, events.status_code, line[:400]))
                    return str(last.get("url", ""))
                if last.get("failed"):
                    break
            status = events.status_code
    except httpx.HTTPError as exc:
        hub.exchanges.append(Exchange("GET", url, None, f"{type(exc).__name__}: {exc}"))
        msg = f"no spawn progress within {endpoint.spawn_timeout:g} s ({type(exc).__name__})"
        raise CheckFailure(msg, "the server ready") from None
    message = REDACTOR.redact(str(last.get("message", "no progress event")))
    hub.exchanges.append(Exchange("GET", url, status, message[:400]))
    raise CheckFailure(f"spawn of server {name} failed: {message}", "the server ready")


def _stop(hub: Recorder, user: str, name: str) -> None:
    quoted = quote(user, safe="")
    hub.request("DELETE", f"/hub/api/users/{quoted}/servers/{name}", expect=(202, 204, 404))
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        model = hub.json("GET", f"/hub/api/users/{quoted}")
        if name not in model.get("servers", {}):
            return
        time.sleep(1)
    raise CheckFailure(f"server {user}/{name} still present after stop", "the server stopped")
