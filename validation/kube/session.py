"""A session with a cluster's API for the cluster checks: the official client, every request
recorded for the check's reason, credentials masked."""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from blueprint.secrets import REDACTOR
from validation.ai.result import CheckFailure, CheckResult, Exchange, excerpt

log = logging.getLogger(__name__)

# Fields of a kubeconfig user that are credentials; their values never reach a reason.
CREDENTIAL_FIELDS = ("token", "password", "client-key-data")


class CheckSkipped(Exception):
    """Raised inside a check that has nothing to look at here; the message says why."""


def remember_credentials(kubeconfig: str) -> None:
    """Add the kubeconfig's tokens, passwords and client keys to the redactor."""
    try:
        data = yaml.safe_load(Path(kubeconfig).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return
    for entry in data.get("users") or []:
        user = (entry or {}).get("user") or {}
        REDACTOR.add([user[name] for name in CREDENTIAL_FIELDS if user.get(name)])
        token_file = user.get("tokenFile")
        if token_file and Path(token_file).is_file():
            REDACTOR.add([Path(token_file).read_text(encoding="utf-8").strip()])


class KubeSession:
    """The cluster's API as the kubeconfig's context reaches it."""

    def __init__(
        self, kubeconfig: str, context: str | None = None, *, request_timeout: float = 15.0
    ) -> None:
        remember_credentials(kubeconfig)
        self.api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context
        )
        self.core = client.CoreV1Api(self.api_client)
        self.storage = client.StorageV1Api(self.api_client)
        self.discovery = client.DiscoveryV1Api(self.api_client)
        self.request_timeout = request_timeout
        self.exchanges: list[Exchange] = []

    @property
    def server(self) -> str:
        """The API server's URL."""
        return str(self.api_client.configuration.host).rstrip("/")

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What verifies the server's certificate for a request outside the client: the
        kubeconfig's CA, the system's, or nothing when it says insecure-skip-tls-verify."""
        configuration = self.api_client.configuration
        if not configuration.verify_ssl:
            return False
        if configuration.ssl_ca_cert:
            return ssl.create_default_context(cafile=str(configuration.ssl_ca_cert))
        return True

    def close(self) -> None:
        self.api_client.close()

    def call(
        self,
        method: str,
        path: str,
        operation: Callable[..., Any],
        *args: Any,
        expect: tuple[int, ...] = (200, 201),
        text: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Call one client operation and return the decoded answer (JSON, else text; with
        `text`, always the text).

        `path` is what the report shows: the request's path with its query. An answer
        outside `expect`, or no answer, fails the check naming the request.
        """
        url = self.server + path
        log.debug("%s %s", method, url)
        try:
            response = operation(
                *args, _preload_content=False, _request_timeout=self.request_timeout, **kwargs
            )
            status, body = response.status, response.data.decode("utf-8", errors="replace")
        except ApiException as exc:
            status, body = exc.status, (exc.body or exc.reason or "")
            if isinstance(body, bytes):
                body = body.decode("utf-8", errors="replace")
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self.exchanges.append(Exchange(method, url, None, excerpt(str(exc))))
            raise CheckFailure(
                f"{method} {url} failed: {type(exc).__name__}: {excerpt(str(exc))}",
                "the cluster's API to answer",
            ) from None

        self.exchanges.append(Exchange(method, url, status, excerpt(body)))
        if status not in expect:
            wanted = " or ".join(str(code) for code in expect)
            raise CheckFailure(
                f"{method} {url} answered HTTP {status}: {excerpt(body)}", f"HTTP {wanted}"
            )
        if text:
            return body
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            return body


def run_check(check: str, session: KubeSession, body: Callable[[], str]) -> CheckResult:
    """Run `body()` and turn its reason, CheckFailure or CheckSkipped into the check's result.

    The session's exchanges recorded during the call belong to this result.
    """
    first = len(session.exchanges)
    skipped = False
    try:
        reason, passed = body(), True
    except CheckFailure as exc:
        reason, passed = str(exc), False
    except CheckSkipped as exc:
        reason, passed, skipped = str(exc), False, True
    exchanges = session.exchanges[first:]
    return CheckResult(check, passed, REDACTOR.redact(reason), exchanges, skipped=skipped)
