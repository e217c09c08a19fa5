"""What an AI or cluster check returns, and an HTTP session that records each exchange for its
reason."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

from blueprint.secrets import REDACTOR

log = logging.getLogger(__name__)

EXCERPT = 400
# The method of an exchange that was a command (the Flower CLI), not an HTTP request.
COMMAND = "RUN"


@dataclass
class Exchange:
    """One request a check made and the start of what came back."""

    method: str
    url: str
    status: int | None
    excerpt: str

    def __str__(self) -> str:
        if self.status is None:
            answer = "no answer"
        elif self.method == COMMAND:
            answer = f"exit {self.status}"
        else:
            answer = f"HTTP {self.status}"
        return f"{self.method} {self.url} -> {answer}: {self.excerpt}"


@dataclass
class CheckResult:
    """Outcome of one check: passed or not, a readable reason, the requests it made.

    `skipped` marks a check that had nothing to look at (its reason says why); it is never
    a pass.
    """

    check: str
    passed: bool
    reason: str
    exchanges: list[Exchange] = field(default_factory=list)
    skipped: bool = False

    def describe(self) -> str:
        """The reason, then the last request made, secrets masked."""
        text = self.reason
        if not self.passed and self.exchanges:
            text += f"; last request: {self.exchanges[-1]}"
        return REDACTOR.redact(text)


# The AI checks' name for it; the cluster checks (validation/kube/) share the same shape.
AiCheckResult = CheckResult


class CheckFailure(Exception):
    """Raised inside a check: what was seen, what was expected."""

    def __init__(self, seen: str, expected: str) -> None:
        super().__init__(f"seen: {seen}; expected: {expected}")


def excerpt(text: str) -> str:
    text = " ".join(text.split())
    return REDACTOR.redact(text[:EXCERPT] + ("..." if len(text) > EXCERPT else ""))


class Recorder:
    """An httpx client that keeps every exchange; a failed request becomes a CheckFailure."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        verify: bool | str = True,
        timeout: float = 30.0,
    ) -> None:
        self.exchanges: list[Exchange] = []
        self.client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers or {},
            auth=auth,
            verify=verify,
            timeout=timeout,
        )

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self, method: str, path: str, *, expect: tuple[int, ...] = (200,), **kwargs: Any
    ) -> httpx.Response:
        """Send a request; an error or an unexpected status fails the check with its excerpt."""
        url = str(self.client.base_url) + path
        log.debug("%s %s", method, REDACTOR.redact(url))
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            shown = REDACTOR.redact(url)
            self.exchanges.append(Exchange(method, shown, None, excerpt(str(exc))))
            raise CheckFailure(
                f"{method} {shown} failed: {type(exc).__name__}: {excerpt(str(exc))}",
                "the endpoint to answer",
            ) from None
        self.exchanges.append(
            Exchange(method, REDACTOR.redact(url), response.status_code, excerpt(response.text))
        )
        if response.status_code not in expect:
            wanted = " or ".join(str(code) for code in expect)
            raise CheckFailure(
                f"{method} {REDACTOR.redact(url)} answered HTTP {response.status_code}: "
                f"{excerpt(response.text)}",
                f"HTTP {wanted}",
            )
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request and decode its JSON answer; a non-JSON answer fails the check."""
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except json.JSONDecodeError:
            raise CheckFailure(
                f"{method} {path} answered non-JSON: {excerpt(response.text)}", "a JSON answer"
            ) from None


def run_check(check: str, body: Any, *args: Any) -> AiCheckResult:
    """Run `body(recorders, *args)`, turning a CheckFailure into a failed result."""
    recorders: list[Recorder] = []
    try:
        reason = body(recorders, *args)
        passed = True
    except CheckFailure as exc:
        reason, passed = str(exc), False
    finally:
        for recorder in recorders:
            recorder.close()
    exchanges = [item for recorder in recorders for item in recorder.exchanges]
    return AiCheckResult(check, passed, REDACTOR.redact(reason), exchanges)
