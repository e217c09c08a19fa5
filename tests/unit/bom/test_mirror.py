"""`mirror serve` against what an earlier mirror left behind, and its checks up front."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
from bomhelpers import KeyPair, StandInRelease, free_port
from test_bundle import standin_lock

from blueprint.bom import mirror, services
from blueprint.bom.bundle import build_bundle
from blueprint.bom.mirror import load_mirror_state, serve, stop
from blueprint.bom.services import SiteServices
from blueprint.errors import BadInput
from blueprint.proc import pid_alive, start_detached, stop_pids


@pytest.fixture
def bundle(tmp_path: Path, standin_release: StandInRelease, keys: KeyPair) -> Path:
    lock_file = standin_lock(tmp_path / "site", standin_release, ["alpha"])
    return build_bundle(lock_file, tmp_path / "b.tar", keys.secret, tmp_path / "cache").path


def test_a_dead_server_s_leftovers_are_stopped_by_the_next_serve(
        tmp_path: Path, bundle: Path, keys: KeyPair) -> None:
    folder = tmp_path / "mirror"
    state = serve(bundle, keys.public, folder, "127.0.0.1", free_port())

    # The HTTP server dies; a stand-in registry (a sleeper whose command line holds the
    # registry's config path, as docker-registry's does) runs on, recorded in the state.
    stop_pids([(state.pid, "blueprint.bom.serve")], timeout=10)
    marker = str(folder / mirror.REGISTRY_CONFIG)
    sleeper = start_detached([sys.executable, "-c", "import time; time.sleep(120)", marker],
                             tmp_path / "sleeper.log")
    state.registry_pid = sleeper.pid
    (folder / mirror.STATE_FILE).write_text(json.dumps(state.__dict__), encoding="utf-8")
    assert pid_alive(sleeper.pid, marker)

    again = serve(bundle, keys.public, folder, "127.0.0.1", free_port())
    try:
        assert not pid_alive(sleeper.pid, marker)
        assert again.registry_pid is None
    finally:
        stop(folder)
        stop_pids([(sleeper.pid, marker)], timeout=5)


def test_a_busy_registry_port_is_refused_before_anything_changes(
        tmp_path: Path, bundle: Path, keys: KeyPair, monkeypatch: pytest.MonkeyPatch) -> None:
    # The stand-in bundle has no images; the check runs as for one that has.
    assert not mirror._bundle_has_images(bundle)
    monkeypatch.setattr(mirror, "_bundle_has_images", lambda _bundle: True)
    monkeypatch.setattr(mirror, "require_tool", lambda _name, _package: _name)
    folder = tmp_path / "mirror"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(BadInput, match=rf"--registry-port {taken}: 127.0.0.1:{taken}/tcp "
                                           "is already in use"):
            serve(bundle, keys.public, folder, "127.0.0.1", free_port(), registry_port=taken)
    assert not (folder / "root").exists()
    assert load_mirror_state(folder) is None


def test_the_registry_config_is_private_from_the_start(tmp_path: Path) -> None:
    path = mirror._registry_config(tmp_path, tmp_path / "storage", "127.0.0.1", 5000)
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o644)
    mirror._registry_config(tmp_path, tmp_path / "storage", "127.0.0.1", 5000)
    assert path.stat().st_mode & 0o777 == 0o600


def test_ntp_as_non_root_is_refused_before_anything_starts(
        tmp_path: Path, bundle: Path, keys: KeyPair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services.os, "geteuid", lambda: 1000)
    folder = tmp_path / "mirror"
    with pytest.raises(BadInput, match="--ntp needs root: chronyd drops to _chrony"):
        serve(bundle, keys.public, folder, "127.0.0.1", free_port(),
              services=SiteServices(ntp_port=free_port()))
    assert not (folder / "root").exists()
    assert load_mirror_state(folder) is None
