"""Licence policy decisions per component, and the compliance record of a site."""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from license_expression import AND, OR, ExpressionError, LicenseSymbol

from blueprint.bom.licences import NOASSERTION, copyright_from_deb, spdx_licensing
from blueprint.bom.lock import Lock
from blueprint.bom.pypi import notice_text
from blueprint.errors import BadInput

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
POLICY_FILE = HERE / "policy.yaml"
QUESTIONS_FILE = HERE / "openchain.yaml"
Decision = Literal["allow", "review", "deny"]
RANK: dict[str, int] = {"allow": 0, "review": 1, "deny": 2}


@dataclass(frozen=True)
class Policy:
    allow: frozenset[str]
    review: frozenset[str]
    deny: frozenset[str]

    def of_id(self, licence_id: str) -> Decision:
        if licence_id in self.deny:
            return "deny"
        if licence_id in self.allow:
            return "allow"
        return "review"


def load_policy(path: Path = POLICY_FILE) -> Policy:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        msg = f"{path}: cannot read the licence policy: {exc}"
        raise BadInput(msg) from exc
    unknown = sorted(set(data) - {"allow", "review", "deny"})
    if unknown:
        msg = f"{path}: key {', '.join(unknown)} is not known; use allow, review, deny"
        raise BadInput(msg)
    sets = {key: frozenset(str(item) for item in data.get(key) or []) for key in RANK}
    both = sorted((sets["allow"] | sets["review"]) & sets["deny"] | sets["allow"] & sets["review"])
    if both:
        msg = f"{path}: {', '.join(both)} is listed under more than one decision"
        raise BadInput(msg)
    return Policy(sets["allow"], sets["review"], sets["deny"])


def decide(expression: str, policy: Policy) -> Decision:
    """One decision for an SPDX expression: OR takes the best choice, AND the worst."""
    if expression == NOASSERTION:
        return "review"
    try:
        parsed = spdx_licensing().parse(expression)
    except ExpressionError:
        return "review"

    def walk(node: Any) -> Decision:
        if isinstance(node, LicenseSymbol):
            return policy.of_id(str(node.key))
        decisions = [walk(arg) for arg in node.args]
        if isinstance(node, OR):
            return min(decisions, key=RANK.__getitem__)
        if isinstance(node, AND):
            return max(decisions, key=RANK.__getitem__)
        return "review"

    return walk(parsed)


@dataclass
class ComponentDecision:
    name: str
    version: str
    kind: str
    licence: str
    decision: Decision


def decisions_for(lock: Lock, policy: Policy) -> list[ComponentDecision]:
    return [ComponentDecision(item.name, item.version, item.kind, item.licence,
                              decide(item.licence, policy))
            for item in lock.items if item.kind != "apt-index"]


@cache
def questions() -> list[dict[str, str]]:
    data = yaml.safe_load(QUESTIONS_FILE.read_text(encoding="utf-8"))
    return [{"id": str(entry["id"]), "question": str(entry["question"])} for entry in data]


def read_answers(path: Path | None) -> tuple[dict[str, dict[str, str]], list[str]]:
    """The organisation's answers by question id, and the ids it has not answered."""
    answers: dict[str, dict[str, str]] = {}
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            msg = f"{path}: cannot read the answers: {exc}"
            raise BadInput(msg) from exc
        known = {q["id"] for q in questions()}
        for key, value in data.items():
            if key not in known:
                msg = f"{path}: {key}: not a question id; use one of {', '.join(sorted(known))}"
                raise BadInput(msg)
            entry = value if isinstance(value, dict) else {"answer": value}
            answer = str(entry.get("answer", "")).lower()
            if answer in ("true", "false"):
                answer = "yes" if answer == "true" else "no"
            if answer not in ("yes", "no"):
                msg = f"{path}: {key}: answer must be yes or no, got {entry.get('answer')!r}"
                raise BadInput(msg)
            answers[key] = {"answer": answer, "evidence": str(entry.get("evidence", ""))}
    missing = [q["id"] for q in questions() if q["id"] not in answers]
    return answers, missing


def write_record(folder: Path, site: str, lock: Lock, decisions: list[ComponentDecision],
                 answers: dict[str, dict[str, str]], unanswered: list[str],
                 debs_cache: Path) -> Path:
    """The compliance record: decisions, self-certification, notices (SBOMs added by caller)."""
    record = folder / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (record / "notices").mkdir(parents=True, exist_ok=True)
    (record / "decisions.json").write_text(json.dumps(
        {"site": site, "components": [asdict(d) for d in decisions]}, indent=1),
        encoding="utf-8")
    self_cert = [{**q, **answers.get(q["id"], {"answer": "unanswered", "evidence": ""})}
                 for q in questions()]
    (record / "self-certification.yaml").write_text(yaml.safe_dump(
        {"answered": len(answers), "unanswered": unanswered, "questions": self_cert},
        sort_keys=False, width=100), encoding="utf-8")
    missing_notices = []
    for item in lock.items:
        if item.kind == "pypi":
            text = notice_text(item.name, item.version)
        elif item.kind == "deb":
            deb = debs_cache / item.path
            text = copyright_from_deb(deb, item.name)[0] if deb.is_file() else None
        else:
            continue
        if text is None:
            missing_notices.append(item.name)
            continue
        suffix = "licence" if item.kind == "pypi" else "copyright"
        (record / "notices" / f"{item.name}.{suffix}").write_text(text, encoding="utf-8")
    if missing_notices:
        (record / "notices" / "MISSING.txt").write_text(
            "No copyright file was found for (run `blueprint bom` to fill the cache, or "
            "the package's doc folder links to another package's; a Python package installed "
            "here at another version than the lock's, or shipping no licence file):\n"
            + "\n".join(missing_notices) + "\n", encoding="utf-8")
    return record
