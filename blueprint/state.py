"""A site's mutable state folder: lock, generated secrets, run history, run outputs."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blueprint.errors import BlueprintError, ExitCode, exit_code_of

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    verb TEXT NOT NULL,
    layers TEXT NOT NULL,
    started TEXT NOT NULL,
    finished TEXT,
    status TEXT NOT NULL,
    exit_code INTEGER,
    log TEXT
);
CREATE TABLE IF NOT EXISTS node_results (
    run_id TEXT NOT NULL REFERENCES runs(id),
    layer TEXT NOT NULL,
    node TEXT NOT NULL,
    ok INTEGER NOT NULL,
    changed INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    unreachable INTEGER NOT NULL,
    skipped INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS provisioned (
    node TEXT PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id),
    at TEXT NOT NULL
);
"""


class RunLocked(BlueprintError):
    """Another run of the same site holds its lock."""


AI_ENDPOINTS_FILE = "ai-endpoints.yaml"


@dataclass(frozen=True)
class StateDir:
    """`inventory/<site>/.state/` or the folder given with --state-dir."""

    root: Path

    @classmethod
    def for_site(cls, site_dir: Path, override: Path | None = None) -> StateDir:
        root = override or site_dir / ".state"
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return cls(root)

    @property
    def kubeconfig(self) -> Path:
        """The cluster's admin kubeconfig, fetched by the kubernetes layer (0600)."""
        return self.root / "kubeconfig"

    @property
    def ai_endpoints(self) -> Path:
        """The AI platform's endpoints for the validation, written by the platform layer."""
        return self.root / AI_ENDPOINTS_FILE

    @property
    def history_db(self) -> Path:
        return self.root / "history.sqlite"

    @property
    def facts_dir(self) -> Path:
        return self.root / "facts"

    def run_dir(self, run_id: str) -> Path:
        path = self.root / "runs" / run_id
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the site's run lock; a second run of the same site stops at once."""
        lock_file = self.root / "run.lock"
        with open(lock_file, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                msg = (
                    f"another run of this site is in progress ({holder}); "
                    f"wait for it or remove {lock_file} if that process is gone"
                )
                raise RunLocked(msg) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}")
            handle.flush()
            try:
                yield
            finally:
                handle.seek(0)
                handle.truncate()
                fcntl.flock(handle, fcntl.LOCK_UN)


def new_run_id(verb: str) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{verb}-{uuid.uuid4().hex[:6]}"


class RunHistory:
    """The site's run history in one SQLite file."""

    def __init__(self, state: StateDir) -> None:
        self._db = sqlite3.connect(state.history_db)
        self._db.executescript(SCHEMA)

    def start(self, run_id: str, site: str, verb: str, layers: list[str], log: Path) -> None:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self._db.execute(
            "INSERT INTO runs (id, site, verb, layers, started, status, log) "
            "VALUES (?, ?, ?, ?, ?, 'running', ?)",
            (run_id, site, verb, json.dumps(layers), now, str(log)),
        )
        self._db.commit()

    def record_layer(self, run_id: str, layer: str, stats: dict[str, dict[str, int]]) -> None:
        rows = [
            (run_id, layer, node, c["ok"], c["changed"], c["failed"], c["unreachable"],
             c["skipped"])
            for node, c in sorted(stats.items())
        ]
        self._db.executemany("INSERT INTO node_results VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self._db.commit()

    def finish(self, run_id: str, status: str, exit_code: int) -> None:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self._db.execute(
            "UPDATE runs SET finished = ?, status = ?, exit_code = ? WHERE id = ?",
            (now, status, exit_code, run_id),
        )
        self._db.commit()

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        cursor = self._db.execute(
            "SELECT id, verb, layers, started, finished, status, exit_code FROM runs "
            "ORDER BY started DESC, id DESC LIMIT ?",
            (limit,),
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def node_results(self, run_id: str) -> list[dict[str, Any]]:
        cursor = self._db.execute(
            "SELECT layer, node, ok, changed, failed, unreachable, skipped FROM node_results "
            "WHERE run_id = ? ORDER BY layer, node",
            (run_id,),
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def mark_provisioned(self, run_id: str, node: str) -> None:
        """Record that `node` was installed by run `run_id` (a later one replaces it)."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self._db.execute("INSERT OR REPLACE INTO provisioned VALUES (?, ?, ?)",
                         (node, run_id, now))
        self._db.commit()

    def provisioned(self) -> dict[str, str]:
        """Every provisioned node and the run that installed it."""
        cursor = self._db.execute("SELECT node, run_id FROM provisioned ORDER BY node")
        return {node: run_id for node, run_id in cursor.fetchall()}

    def close(self) -> None:
        self._db.close()


@contextmanager
def recorded_run(
    state: StateDir, run_id: str, site: str, verb: str, layers: list[str],
) -> Iterator[RunHistory]:
    """A run in the history: started here, finished ok or failed (with the exit code it
    reports) when the block ends or raises; the history is closed either way."""
    history = RunHistory(state)
    history.start(run_id, site, verb, layers, state.run_dir(run_id))
    try:
        yield history
    except BaseException as exc:
        history.finish(run_id, "failed", int(exit_code_of(exc)))
        raise
    else:
        history.finish(run_id, "ok", ExitCode.OK)
    finally:
        history.close()
