"""The lock: drift against the site is named, offline needs a lock, published checksums."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from bomhelpers import StandInRelease, write_site

from blueprint.bom.lock import (
    Lock,
    LockItem,
    check_lock,
    load_lock,
    lock_path,
    published_sha256,
    site_inputs,
    write_lock,
)
from blueprint.errors import BadInput
from blueprint.loader import load_site


def lock_for(site_file: Path) -> Lock:
    loaded = load_site(site_file)
    lock = Lock(site=loaded.site.name, generated="2026-12-03T00:00:00+00:00", release="bookworm",
                architecture="amd64", archive="http://deb.debian.org/debian",
                inputs=site_inputs(loaded))
    write_lock(lock, lock_path(loaded))
    return lock


def test_lock_round_trips_and_matches_its_site(tmp_path: Path) -> None:
    site_file = write_site(tmp_path)
    lock = lock_for(site_file)
    loaded = load_site(site_file)
    assert load_lock(lock_path(loaded)) == lock
    assert check_lock(loaded) == lock


def test_drift_is_refused_naming_each_change(tmp_path: Path) -> None:
    site_file = write_site(tmp_path)
    lock_for(site_file)
    data = yaml.safe_load(site_file.read_text())
    data["overrides"] = {"os_baseline_extra_packages": ["jq"]}
    data["nodes"].append({"name": "n3", "address": "10.9.0.13", "roles": ["storage"]})
    site_file.write_text(yaml.safe_dump(data))

    with pytest.raises(BadInput) as caught:
        check_lock(load_site(site_file))
    message = str(caught.value)
    assert "no longer matches the site" in message
    assert "layer os_baseline, node role worker: packages added: jq" in message
    assert "node role storage: not in the lock" in message


def test_offline_needs_a_lock(tmp_path: Path) -> None:
    site_file = write_site(tmp_path, artifacts={"mode": "offline",
                                                "apt_proxy": "http://10.9.0.1:3150"})
    with pytest.raises(BadInput, match=r"offline needs a lock; run `blueprint bom"):
        check_lock(load_site(site_file), required=True)


def test_offline_needs_the_mirror_address(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="mode 'offline' needs apt_proxy"):
        load_site(write_site(tmp_path, artifacts={"mode": "offline"}))


def test_broken_lock_names_file_and_field(tmp_path: Path) -> None:
    site_file = write_site(tmp_path)
    lock = lock_for(site_file)
    bad = lock.model_copy(update={"items": [LockItem(
        name="x", version="1", kind="file", url="http://h/x", path="x", sha256="0" * 64,
        licence="MIT", layer="os_baseline")]})
    path = lock_path(load_site(site_file))
    write_lock(bad, path)
    path.write_text(path.read_text().replace("0" * 64, "not-a-checksum"))
    with pytest.raises(BadInput, match=r"bom.lock.yaml: items.0.sha256"):
        load_lock(path)


def test_published_checksums_from_a_standin_release(standin_release: StandInRelease) -> None:
    sha = standin_release.publish("v1.0/tool-linux-amd64", b"stand-in binary")
    other = standin_release.publish("v1.0/other", b"other")
    standin_release.publish("v1.0/sha256sum.txt",
                            f"{other}  other\n{sha}  tool-linux-amd64\n".encode())
    standin_release.publish("v1.0/tool-linux-amd64.sha256", f"{sha}\n".encode())
    url = f"{standin_release.url}/v1.0/tool-linux-amd64"
    assert published_sha256(url, f"{standin_release.url}/v1.0/sha256sum.txt", None) == sha
    assert published_sha256(url, f"{url}.sha256", None) == sha
    # Never invented: a list without the file, or no list at all, gives no checksum.
    assert published_sha256(f"{standin_release.url}/v1.0/nope",
                            f"{standin_release.url}/v1.0/sha256sum.txt", None) is None
    assert published_sha256(url, f"{standin_release.url}/v1.0/missing.txt", None) is None
