"""Offline bundles and the site mirror, from a stand-in release served on loopback.

Items are stand-in files (no upstream release is reachable here), locked with their sha256;
the bundle, its minisign signature, `mirror serve` and the offline preflight are the real code.
"""

from __future__ import annotations

import io
import json
import socket
import tarfile
from pathlib import Path

import pytest
import yaml
from bomhelpers import KeyPair, StandInRelease, make_keypair, write_site

from blueprint.bom.bundle import BundleRefused, build_bundle, verify_bundle
from blueprint.bom.lock import Lock, LockItem, lock_path, site_inputs, write_lock
from blueprint.bom.mirror import check_offline_mirror, load_mirror_state, serve, stop
from blueprint.errors import BadInput, EnvironmentMissing
from blueprint.loader import LoadedSite, load_site


def standin_lock(site_dir: Path, release: StandInRelease, names: list[str]) -> Path:
    """A lock of stand-in files published on the stand-in release; returns its path."""
    site_dir.mkdir(parents=True, exist_ok=True)
    loaded = load_site(write_site(site_dir))
    items = []
    for name in names:
        path = f"standin/{name}/{name}-1.0.bin"
        sha = release.publish(path, f"stand-in {name} 1.0\n".encode() * 100)
        items.append(LockItem(name=name, version="1.0", kind="file", url=f"{release.url}/{path}",
                              path=path, size=len(f"stand-in {name} 1.0\n") * 100, sha256=sha,
                              licence="Apache-2.0", layer="os_baseline"))
    lock = Lock(site="bomtest", generated="2026-12-03T00:00:00+00:00", release="bookworm",
                architecture="amd64", archive="http://deb.debian.org/debian",
                inputs=site_inputs(loaded), items=items)
    write_lock(lock, lock_path(loaded))
    return lock_path(loaded)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_build_then_verify(tmp_path: Path, standin_release: StandInRelease,
                           keys: KeyPair) -> None:
    lock_file = standin_lock(tmp_path / "site", standin_release, ["alpha", "beta"])
    built = build_bundle(lock_file, tmp_path / "b.tar", keys.secret, tmp_path / "cache")
    assert built.files == 2
    manifest = verify_bundle(built.path, keys.public)
    assert sorted(entry["name"] for entry in manifest["files"]) == ["alpha", "beta"]


def test_a_wrong_upstream_file_is_never_bundled(tmp_path: Path, standin_release: StandInRelease,
                                                keys: KeyPair) -> None:
    lock_file = standin_lock(tmp_path / "site", standin_release, ["alpha"])
    standin_release.publish("standin/alpha/alpha-1.0.bin", b"swapped upstream")
    with pytest.raises(Exception, match="does not match the expected"):
        build_bundle(lock_file, tmp_path / "b.tar", keys.secret, tmp_path / "cache")


def repack(src: Path, dest: Path, replace: dict[str, bytes]) -> None:
    """Copy a bundle, changing some members' content (what an attacker or a bad disk does)."""
    with tarfile.open(src) as old, tarfile.open(dest, "w") as new:
        for member in old.getmembers():
            data = old.extractfile(member)
            content = data.read() if data else b""
            if member.name in replace:
                content = replace[member.name]
                member.size = len(content)

            new.addfile(member, io.BytesIO(content))


def test_tampered_file_and_bad_signature_are_refused(
        tmp_path: Path, standin_release: StandInRelease, keys: KeyPair) -> None:
    lock_file = standin_lock(tmp_path / "site", standin_release, ["alpha", "beta"])
    good = build_bundle(lock_file, tmp_path / "b.tar", keys.secret, tmp_path / "cache").path

    tampered = tmp_path / "tampered.tar"
    repack(good, tampered, {"files/standin/alpha/alpha-1.0.bin": b"evil"})
    with pytest.raises(BundleRefused, match=r"alpha-1.0.bin: sha256 differs"):
        verify_bundle(tampered, keys.public)

    stranger = make_keypair(tmp_path / "other", "stranger")
    with pytest.raises(BundleRefused, match="signature does not verify"):
        verify_bundle(good, stranger.public)

    with tarfile.open(good) as archive:
        manifest = archive.extractfile("manifest.json")
        assert manifest is not None
        text = manifest.read().replace(b'"beta"', b'"gamma"')
    forged = tmp_path / "forged.tar"
    repack(good, forged, {"manifest.json": text})
    with pytest.raises(BundleRefused, match="signature does not verify"):
        verify_bundle(forged, keys.public)

    # mirror serve refuses it too, and starts nothing.
    with pytest.raises(BundleRefused):
        serve(tampered, keys.public, tmp_path / "mirror", "127.0.0.1", free_port())
    assert load_mirror_state(tmp_path / "mirror") is None


def test_update_bundle_carries_only_changes(tmp_path: Path, standin_release: StandInRelease,
                                            keys: KeyPair) -> None:
    old_lock = standin_lock(tmp_path / "site", standin_release, ["alpha", "beta"])
    kept = tmp_path / "old.lock.yaml"
    kept.write_text(old_lock.read_text())
    new_lock = standin_lock(tmp_path / "site", standin_release, ["alpha", "beta", "gamma"])
    update = build_bundle(new_lock, tmp_path / "u.tar", keys.secret, tmp_path / "cache",
                          since=kept)
    manifest = verify_bundle(update.path, keys.public)
    assert [entry["name"] for entry in manifest["files"]] == ["gamma"]
    assert manifest["since_lock_sha256"]
    with pytest.raises(BadInput, match="update bundle"):
        serve(update.path, keys.public, tmp_path / "mirror", "127.0.0.1", free_port())
    stop(tmp_path / "mirror")


def offline_site(site_dir: Path, url: str) -> LoadedSite:
    site_file = site_dir / "site.yaml"
    data = yaml.safe_load(site_file.read_text())
    data["artifacts"] = {"mode": "offline", "apt_proxy": url}
    site_file.write_text(yaml.safe_dump(data))
    return load_site(site_file)


def test_mirror_serves_the_bundle_and_preflight_names_a_missing_item(
        tmp_path: Path, standin_release: StandInRelease, keys: KeyPair) -> None:
    lock_file = standin_lock(tmp_path / "site", standin_release, ["alpha", "beta"])
    bundle = build_bundle(lock_file, tmp_path / "b.tar", keys.secret, tmp_path / "cache").path
    folder = tmp_path / "mirror"
    state = serve(bundle, keys.public, folder, "127.0.0.1", free_port())
    try:
        loaded = offline_site(tmp_path / "site", state.url)
        from blueprint.bom.lock import load_lock

        lock = load_lock(lock_file)
        check_offline_mirror(loaded, lock)

        # A file lost from the served mirror: named with version, checksum and where.
        missing = next(item for item in lock.items if item.name == "beta")
        (folder / "root" / "files" / missing.path).unlink()
        with pytest.raises(EnvironmentMissing) as caught:
            check_offline_mirror(loaded, lock)
        text = str(caught.value)
        assert "1 item(s) of the lock are not on the site mirror" in text
        assert f"file beta 1.0 (sha256 {missing.sha256})" in text
        assert f"{missing.path}: 404" in text
        assert "alpha" not in text
    finally:
        assert stop(folder) is not None
    assert load_mirror_state(folder) is None
    with pytest.raises(EnvironmentMissing, match="does not answer"):
        check_offline_mirror(loaded, lock)


def test_update_bundle_is_applied_onto_the_served_mirror(
        tmp_path: Path, standin_release: StandInRelease, keys: KeyPair) -> None:
    from blueprint.bom.lock import load_lock

    site = tmp_path / "site"
    old_lock = standin_lock(site, standin_release, ["alpha", "beta"])
    kept = tmp_path / "old.lock.yaml"
    kept.write_text(old_lock.read_text())
    full = build_bundle(old_lock, tmp_path / "full.tar", keys.secret, tmp_path / "cache")
    folder = tmp_path / "mirror"
    state = serve(full.path, keys.public, folder, "127.0.0.1", free_port())
    try:
        new_lock = standin_lock(site, standin_release, ["alpha", "beta", "gamma"])
        update = build_bundle(new_lock, tmp_path / "u.tar", keys.secret, tmp_path / "cache",
                              since=kept).path

        # A tampered update is refused, and the served mirror runs on unchanged.
        tampered = tmp_path / "tampered.tar"
        repack(update, tampered, {"files/standin/gamma/gamma-1.0.bin": b"evil"})
        with pytest.raises(BundleRefused, match=r"gamma-1\.0\.bin: sha256 differs"):
            serve(tampered, keys.public, folder, "127.0.0.1", free_port())
        running = load_mirror_state(folder)
        assert running is not None and running.pid == state.pid

        # An update built against another lock than the served one is refused.
        newer = tmp_path / "new.lock.yaml"
        newer.write_text(new_lock.read_text())
        elsewhere = build_bundle(new_lock, tmp_path / "e.tar", keys.secret, tmp_path / "cache",
                                 since=newer).path
        with pytest.raises(BundleRefused, match="built against the lock with sha256"):
            serve(elsewhere, keys.public, folder, "127.0.0.1", free_port())

        # A mirror that lost an item the update counts on refuses it too.
        listing = folder / "root" / "manifest.json"
        saved = listing.read_text()
        data = json.loads(saved)
        data["files"] = [entry for entry in data["files"] if entry["name"] != "beta"]
        listing.write_text(json.dumps(data))
        with pytest.raises(BundleRefused, match=r"neither in it nor on the mirror:\n  file beta"):
            serve(update, keys.public, folder, "127.0.0.1", free_port())
        listing.write_text(saved)

        # The update applied: the mirror restarts at its own address and serves the new lock.
        applied = serve(update, keys.public, folder, "127.0.0.1", free_port())
        assert applied.url == state.url and applied.pid != state.pid
        check_offline_mirror(offline_site(site, applied.url), load_lock(new_lock))
        # Its base is now the new lock: the same update again does not apply.
        with pytest.raises(BundleRefused, match="built against the lock"):
            serve(update, keys.public, folder, "127.0.0.1", free_port())
    finally:
        stop(folder)
