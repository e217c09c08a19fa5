"""Helm charts and container images of the platform layer: lock, bundle, site mirror, SBOM.

No Helm repository and no container registry is reachable here, so both upstreams are
STAND-INs run by the test on 127.0.0.1: a Helm repository (chart archives written with
tarfile as `helm package` lays them out, and an index.yaml) served by an in-process HTTP
server, and Debian's docker-registry (distribution) with its own config and storage, into
which the test pushes small images over the registry API. The catalogue names both through
$BLUEPRINT_CATALOGUE, as an operator's own catalogue would. The lock, bundle, mirror and
preflight code is the product's own.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from bomhelpers import (
    KeyPair,
    StandInRegistry,
    free_port,
    make_chart,
    push_chart,
    serve_folder,
    start_registry,
    write_helm_index,
    write_site,
)

from blueprint.bom import charts as charts_module
from blueprint.bom import mirror as mirror_module
from blueprint.bom.bundle import build_bundle, verify_bundle
from blueprint.bom.lock import (
    LOCK_NAME,
    Lock,
    lock_path,
    platform_items,
    platform_pins,
    site_inputs,
    write_lock,
)
from blueprint.bom.mirror import check_offline_mirror, load_mirror_state, serve, stop
from blueprint.bom.oci import MANIFEST_ACCEPT, RegistryClient, parse_reference, registry_storage
from blueprint.bom.sbom import merge, write_sboms
from blueprint.errors import BadInput, DeployFailed, EnvironmentMissing
from blueprint.loader import LoadedSite, load_site

REGISTRY = "registry.stand-in.test"
APP = f"{REGISTRY}/standin/app:1.0"
TOOL = f"{REGISTRY}/standin/tool:2.0"


@dataclass
class Upstreams:
    charts_url: str
    charts: Path
    registry: StandInRegistry
    app_digest: str
    app_blobs: list[str]
    tool_digest: str


@pytest.fixture
def upstreams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Upstreams]:
    """The stand-in Helm repository and registry, named in an operator catalogue."""
    charts = tmp_path / "standin-helm" / "charts"
    archives = [make_chart(charts, "standin-app", "1.2.0",
                           annotations={"artifacthub.io/license": "Apache-2.0"}),
                make_chart(charts, "standin-bare", "0.1.0")]
    write_helm_index(charts, archives)
    server, thread = serve_folder(tmp_path / "standin-helm")
    registry = start_registry(tmp_path / "standin-registry")
    try:
        app_digest, app_blobs = registry.push_image("standin/app", "1.0", b"stand-in app")
        tool_digest, _ = registry.push_image("standin/tool", "2.0", b"stand-in tool",
                                             index=False)
        charts_url = f"http://127.0.0.1:{server.server_address[1]}/charts"
        catalogue = tmp_path / "catalogue.yaml"
        catalogue.write_text(yaml.safe_dump({
            "repositories": {"standin-charts": {"kind": "helm", "layer": "platform",
                                                "url": charts_url},
                             "standin-oci": {"kind": "helm", "layer": "platform",
                                             "url": f"oci://{REGISTRY}/charts"}},
            "registries": {REGISTRY: {"url": registry.url}}}))
        monkeypatch.setenv("BLUEPRINT_CATALOGUE", str(catalogue))
        charts_module._indexes.clear()
        yield Upstreams(charts_url, charts, registry, app_digest, app_blobs, tool_digest)
    finally:
        registry.stop()
        server.shutdown()
        server.server_close()
        thread.join()


def platform_site(folder: Path, oci_chart: bool = False, own_image: str | None = None,
                  **extra: object) -> LoadedSite:
    """A site whose blueprint has only a platform layer pinning the stand-in chart/images
    (and, with `oci_chart`, a chart kept in the stand-in registry)."""
    folder.mkdir(parents=True, exist_ok=True)
    off = dict.fromkeys(["gpu", "storage", "access", "notebooks", "mlflow", "pipelines",
                         "serving", "flower", "monitoring"], False)
    blueprint = {
        "name": "standin-platform", "version": "0.0.1",
        "description": "STAND-IN: a platform layer of stand-in charts and images",
        "layers": [{"name": "platform", "options": {
            "components": off,
            "storage": {"classes": [{"name": "local-path", "kind": "local-path",
                                     "default": True}]},
            "notebooks": {"catalog": [{"name": "standin", "display_name": "stand-in",
                                       "image": APP,
                                       "frameworks": ["tensorflow", "pytorch",
                                                      "tensorboard"]}]},
            "charts": {
                "app": {"chart": "standin-app", "repository": "standin-charts",
                        "images": {"main": APP, "tool": TOOL}},
                "bare": {"chart": "standin-bare", "repository": "standin-charts"}}},
            "versions": {"app": "1.2.0", "bare": "0.1.0"}}],
        "hardware": {"worker": {"min_cpus": 1, "min_memory_gib": 1, "min_disk_gib": 5}},
        "validation": {"suite": "lab"},
    }
    layer = blueprint["layers"][0]  # type: ignore[index]
    if own_image:
        layer["options"]["images"] = {"extra": own_image}
    if oci_chart:
        layer["options"]["charts"]["oci"] = {"chart": "standin-oci", "repository": "standin-oci"}
        layer["versions"]["oci"] = "3.0.0+build.1"
    (folder / "standin-platform.yaml").write_text(yaml.safe_dump(blueprint, sort_keys=False))
    return load_site(write_site(folder, blueprint="standin-platform.yaml", **extra))


def platform_lock(loaded: LoadedSite, files: Path) -> Lock:
    charts, images = platform_pins(loaded)
    chart_items, image_items, unresolved = platform_items(loaded, charts, images, files,
                                                          proxy=None)
    lock = Lock(site=loaded.site.name, generated="2026-12-04T00:00:00+00:00",
                release="bookworm", architecture="amd64",
                archive="http://deb.debian.org/debian", inputs=site_inputs(loaded),
                items=[*chart_items, *image_items], unresolved=unresolved)
    write_lock(lock, lock_path(loaded))
    return lock


def test_lock_pins_charts_and_images_from_the_stand_ins(tmp_path: Path,
                                                       upstreams: Upstreams) -> None:
    loaded = platform_site(tmp_path / "site")
    lock = platform_lock(loaded, tmp_path / "cache")
    assert lock.unresolved == []
    by_name = {item.name: item for item in lock.items}
    assert sorted({item.kind for item in lock.items}) == ["chart", "image"]

    app = by_name["standin-app"]
    archive = upstreams.charts / "standin-app-1.2.0.tgz"
    assert (app.kind, app.version, app.layer) == ("chart", "1.2.0", "platform")
    assert app.url == f"{upstreams.charts_url}/standin-app-1.2.0.tgz"
    assert app.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert app.size == archive.stat().st_size
    assert (app.repository, app.repository_url) == ("standin-charts", upstreams.charts_url)
    assert app.path == "helm/standin-charts/standin-app-1.2.0.tgz"
    assert app.licence == "Apache-2.0"  # Artifact Hub's annotation in its Chart.yaml
    assert by_name["standin-bare"].licence == "NOASSERTION"  # states none

    image = by_name[f"{REGISTRY}/standin/app"]
    assert (image.kind, image.version, image.reference) == ("image", "1.0", APP)
    assert image.digest == upstreams.app_digest  # the index, as the registry's HEAD gives it
    assert image.sha256 == upstreams.app_digest.removeprefix("sha256:")
    assert image.licence == "NOASSERTION"
    assert by_name[f"{REGISTRY}/standin/tool"].digest == upstreams.tool_digest
    # The notebook image is the chart's APP: locked once.
    assert [item.reference for item in lock.items if item.kind == "image"] == [APP, TOOL]

    # The lock's inputs name what the blueprint pins, so a changed pin is drift.
    assert site_inputs(loaded)["platform"] == {
        "charts": {"app": f"standin-app 1.2.0 {upstreams.charts_url}",
                   "bare": f"standin-bare 0.1.0 {upstreams.charts_url}"},
        "images": [APP, TOOL]}


def test_a_chart_whose_archive_differs_from_the_index_digest_is_refused(
        tmp_path: Path, upstreams: Upstreams) -> None:
    archive = upstreams.charts / "standin-app-1.2.0.tgz"
    write_helm_index(upstreams.charts, [archive, upstreams.charts / "standin-bare-0.1.0.tgz"],
                     digests={archive.name: "0" * 64})
    loaded = platform_site(tmp_path / "site")
    with pytest.raises(DeployFailed, match=r"chart standin-app 1\.2\.0: the archive .* does "
                                           r"not have the sha256 0{64}.*refused"):
        platform_lock(loaded, tmp_path / "cache")
    assert not (tmp_path / "cache" / "helm" / "standin-charts" / archive.name).exists()


def test_a_chart_without_a_digest_is_unresolved_never_invented(
        tmp_path: Path, upstreams: Upstreams) -> None:
    index = yaml.safe_load((upstreams.charts / "index.yaml").read_text())
    del index["entries"]["standin-bare"][0]["digest"]
    (upstreams.charts / "index.yaml").write_text(yaml.safe_dump(index))
    lock = platform_lock(platform_site(tmp_path / "site"), tmp_path / "cache")
    [entry] = lock.unresolved
    assert entry.name == "chart standin-bare"
    assert "has no sha256 digest" in entry.reason


def test_an_image_pinned_by_digest_is_taken_as_is(tmp_path: Path) -> None:
    loaded = load_site(write_site(tmp_path))
    digest = "sha256:" + "ab" * 32
    # registry.invalid answers nothing: any request would fail the test.
    _, [image], _ = platform_items(loaded, [], [f"registry.invalid/x/y:1@{digest}"],
                                   tmp_path, proxy=None)
    assert (image.digest, image.version, image.size) == (digest, "1", None)


def test_digests_and_paths_from_upstream_cannot_name_other_files(tmp_path: Path) -> None:
    from blueprint.bom.oci import blob_path
    from blueprint.errors import BadInput

    digest = "sha256:" + "ef" * 32
    assert blob_path(tmp_path, digest) == tmp_path / "sha256" / ("ef" * 32)
    for bad in ("sha256:../../etc/passwd", "sha512:" + "ef" * 64, "ef" * 32):
        with pytest.raises(DeployFailed, match="is not a sha256 digest"):
            blob_path(tmp_path, bad)
    with pytest.raises(BadInput, match="is not registry/path:tag"):
        parse_reference("registry.example/a/../../b:1")


class _TokenRegistry(BaseHTTPRequestHandler):
    """A registry that wants the anonymous bearer token flow (as Docker Hub does)."""

    digest = "sha256:" + "cd" * 32

    def do_HEAD(self) -> None:
        if self.path.startswith("/token?"):
            self.send_error(405)
            return
        if self.headers.get("Authorization") != "Bearer stand-in-token":
            self.send_response(401)
            realm = f"http://{self.headers['Host']}/token"
            self.send_header("WWW-Authenticate",
                             f'Bearer realm="{realm}",service="stand-in",'
                             'scope="repository:x/y:pull"')
            self.end_headers()
            return
        assert MANIFEST_ACCEPT.split(", ")[0] in self.headers["Accept"]
        self.send_response(200)
        self.send_header("Docker-Content-Digest", self.digest)
        self.send_header("Content-Length", "321")
        self.end_headers()

    def do_GET(self) -> None:
        ok = self.path == "/token?scope=repository%3Ax%2Fy%3Apull&service=stand-in"
        body = json.dumps({"token": "stand-in-token"} if ok else {}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_anonymous_bearer_token_flow() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = RegistryClient("stand-in", endpoint=f"http://127.0.0.1:{server.server_address[1]}")
        assert client.manifest_digest(parse_reference("stand-in/x/y:1")) == (
            _TokenRegistry.digest, 321)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _get(url: str, accept: str = "*/*", method: str = "GET") -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, method=method, headers={"Accept": accept})
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                request, timeout=10) as answer:
            return answer.status, answer.read(), dict(answer.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, b"", {}


def test_bundle_and_mirror_serve_charts_and_images(tmp_path: Path, upstreams: Upstreams,
                                                   keys: KeyPair) -> None:
    loaded = platform_site(tmp_path / "site")
    lock = platform_lock(loaded, tmp_path / "cache")
    built = build_bundle(lock_path(loaded), tmp_path / "b.tar", keys.secret, tmp_path / "cache")
    manifest = verify_bundle(built.path, keys.public)
    paths = {entry["path"] for entry in manifest["files"]}
    # The amd64 image of the index, with its config and layer; not the arm64 one.
    for digest in upstreams.app_blobs:
        assert f"files/oci/blobs/sha256/{digest.removeprefix('sha256:')}" in paths
    assert "files/helm/standin-charts/standin-app-1.2.0.tgz" in paths
    assert len(paths) == 2 + 4 + 3  # two charts, the app's index and image, the tool's image

    folder = tmp_path / "mirror"
    state = serve(built.path, keys.public, folder, "127.0.0.1", free_port(),
                  registry_port=free_port())
    try:
        assert state.registry_pid is not None
        # The Helm repository: the index lists the chart with its digest, at a relative URL.
        status, body, _ = _get(f"{state.url}/helm/standin-charts/index.yaml")
        assert status == 200
        entry = yaml.safe_load(body)["entries"]["standin-app"][0]
        app = next(item for item in lock.items if item.name == "standin-app")
        assert (entry["version"], entry["digest"], entry["urls"]) == (
            "1.2.0", app.sha256, ["standin-app-1.2.0.tgz"])
        status, body, _ = _get(f"{state.url}/helm/standin-charts/{entry['urls'][0]}")
        assert hashlib.sha256(body).hexdigest() == app.sha256

        # The registry: the image by digest and by tag; what the bundle lacks is a 404.
        registry = f"http://127.0.0.1:{state.registry_port}"
        status, _, headers = _get(f"{registry}/v2/standin/app/manifests/{upstreams.app_digest}",
                                  MANIFEST_ACCEPT, "HEAD")
        assert (status, headers.get("Docker-Content-Digest")) == (200, upstreams.app_digest)
        index = json.loads((tmp_path / "cache" / "oci" / "blobs" / "sha256" /
                            upstreams.app_digest.removeprefix("sha256:")).read_bytes())
        arm64 = next(m["digest"] for m in index["manifests"]
                     if m["platform"]["architecture"] == "arm64")
        assert _get(f"{registry}/v2/standin/app/manifests/{arm64}", MANIFEST_ACCEPT)[0] == 404
        assert _get(f"{registry}/v2/standin/other/manifests/1.0", MANIFEST_ACCEPT)[0] == 404
        if shutil.which("skopeo"):
            # A real client pulls the whole amd64 image and checks every digest.
            copied = subprocess.run(
                ["skopeo", "--override-arch", "amd64", "--override-os", "linux", "copy",
                 "--src-tls-verify=false", f"docker://127.0.0.1:{state.registry_port}/"
                 "standin/app:1.0", f"oci:{tmp_path / 'pulled'}:app"],
                capture_output=True, text=True, check=False)
            assert copied.returncode == 0, copied.stderr
        # The registry is read-only.
        push = urllib.request.Request(f"{registry}/v2/standin/app/blobs/uploads/", method="POST")
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(push, timeout=10)

        # The offline preflight proves charts (index and archive) and images (registry).
        # Nodes must pull the images through the mirror's registry, not upstream.
        unmirrored = platform_site(tmp_path / "site", artifacts={"mode": "offline",
                                                                  "apt_proxy": state.url})
        with pytest.raises(EnvironmentMissing, match=rf"registry {REGISTRY} \(2 image\(s\)"
                                                     r".*no entry in artifacts.registry_mirrors"):
            check_offline_mirror(unmirrored, lock)
        offline = platform_site(tmp_path / "site", artifacts={
            "mode": "offline", "apt_proxy": state.url,
            "registry_mirrors": {REGISTRY: f"http://127.0.0.1:{state.registry_port}"}})
        check_offline_mirror(offline, lock)
        (folder / "root" / "files" / app.path).unlink()
        tag = (folder / "registry" / "docker" / "registry" / "v2" / "repositories" /
               "standin" / "tool" / "_manifests" / "tags" / "2.0")
        shutil.rmtree(tag)
        with pytest.raises(EnvironmentMissing) as caught:
            check_offline_mirror(offline, lock)
        text = str(caught.value)
        assert "2 item(s) of the lock are not on the site mirror" in text
        assert f"chart standin-app 1.2.0 (sha256 {app.sha256}): not served" in text
        assert f"image {REGISTRY}/standin/tool 2.0" in text
        assert "standin/tool/manifests/2.0: 404" in text
    finally:
        assert stop(folder) is not None
    assert not Path(f"/proc/{state.registry_pid}").exists() or b"docker-registry" not in \
        Path(f"/proc/{state.registry_pid}/cmdline").read_bytes()


def test_offline_site_takes_charts_from_the_mirrors_helm_repository(
        tmp_path: Path, upstreams: Upstreams) -> None:
    from blueprint.artifacts import resolve_repositories

    loaded = platform_site(tmp_path / "site", artifacts={"mode": "offline",
                                                          "apt_proxy": "http://10.9.0.1:3150"})
    [repository] = [repo for repo in resolve_repositories(loaded.site, ["platform"])
                    if repo.name == "standin-charts"]
    assert (repository.url, repository.source) == ("http://10.9.0.1:3150/helm/standin-charts",
                                                   "offline bundle")


def test_sbom_names_charts_and_images_with_their_purls(tmp_path: Path,
                                                       upstreams: Upstreams) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    lock = platform_lock(platform_site(tmp_path / "site"), tmp_path / "cache")
    components = {c.name: c for c in merge(lock, [])}
    image = components[f"{REGISTRY}/standin/app"]
    # packageurl-python leaves the digest's ':' unencoded (purl allows both spellings).
    assert image.purl("bookworm") == (
        f"pkg:oci/app@{upstreams.app_digest}?repository_url={REGISTRY}/standin/app&tag=1.0")
    chart = components["standin-app"]
    assert chart.purl("bookworm").startswith("pkg:generic/standin-app@1.2.0?checksum=sha256")
    cdx, _ = write_sboms("bomtest", lock, list(components.values()), tmp_path / "sbom")
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(cdx.read_text()) is None
    types = {c["name"]: c["type"] for c in json.loads(cdx.read_text())["components"]}
    assert types[f"{REGISTRY}/standin/app"] == "container"


def test_a_chart_kept_in_a_registry_is_locked_bundled_and_served(
        tmp_path: Path, upstreams: Upstreams, keys: KeyPair) -> None:
    archive = make_chart(tmp_path / "oci-chart", "standin-oci", "3.0.0+build.1")
    # Helm pushes version 3.0.0+build.1 as tag 3.0.0_build.1: OCI tags have no '+'.
    layer = push_chart(upstreams.registry, "charts/standin-oci", "3.0.0_build.1", archive)
    loaded = platform_site(tmp_path / "site", oci_chart=True)
    lock = platform_lock(loaded, tmp_path / "cache")
    chart = next(item for item in lock.items if item.name == "standin-oci")
    assert chart.sha256 == layer.removeprefix("sha256:")
    assert chart.url == f"oci://{REGISTRY}/charts/standin-oci:3.0.0_build.1"
    assert chart.path == "helm/standin-oci/standin-oci-3.0.0+build.1.tgz"

    (tmp_path / "cache" / chart.path).unlink()  # the bundle fetches it again
    built = build_bundle(lock_path(loaded), tmp_path / "b.tar", keys.secret, tmp_path / "cache")
    folder = tmp_path / "mirror"
    state = serve(built.path, keys.public, folder, "127.0.0.1", free_port(),
                  registry_port=free_port())
    try:
        status, body, _ = _get(f"{state.url}/helm/standin-oci/index.yaml")
        [entry] = yaml.safe_load(body)["entries"]["standin-oci"]
        assert (status, entry["digest"]) == (200, chart.sha256)
        status, body, _ = _get(f"{state.url}/helm/standin-oci/{entry['urls'][0]}")
        assert hashlib.sha256(body).hexdigest() == chart.sha256
    finally:
        stop(folder)


def test_an_update_bundle_adds_an_image_to_the_served_registry(
        tmp_path: Path, upstreams: Upstreams, keys: KeyPair) -> None:
    loaded = platform_site(tmp_path / "site")
    platform_lock(loaded, tmp_path / "cache")
    kept = tmp_path / "old.lock.yaml"
    kept.write_text(lock_path(loaded).read_text())
    full = build_bundle(lock_path(loaded), tmp_path / "full.tar", keys.secret,
                        tmp_path / "cache")
    folder = tmp_path / "mirror"
    state = serve(full.path, keys.public, folder, "127.0.0.1", free_port(),
                  registry_port=free_port())
    try:
        registry = f"http://127.0.0.1:{state.registry_port}"
        assert _get(f"{registry}/v2/standin/extra/manifests/3.0", MANIFEST_ACCEPT)[0] == 404

        extra_digest, _ = upstreams.registry.push_image("standin/extra", "3.0", b"extra")
        loaded = platform_site(tmp_path / "site", own_image=f"{REGISTRY}/standin/extra:3.0")
        lock = platform_lock(loaded, tmp_path / "cache")
        update = build_bundle(lock_path(loaded), tmp_path / "u.tar", keys.secret,
                              tmp_path / "cache", since=kept)
        paths = {entry["path"] for entry in verify_bundle(update.path, keys.public)["files"]}
        assert len(paths) == 4  # the new image's index, amd64 manifest, config and layer

        applied = serve(update.path, keys.public, folder, "127.0.0.1", free_port())
        assert applied.registry_port == state.registry_port
        status, _, headers = _get(f"{registry}/v2/standin/extra/manifests/3.0", MANIFEST_ACCEPT)
        assert (status, headers.get("Docker-Content-Digest")) == (200, extra_digest)
        assert _get(f"{registry}/v2/standin/app/manifests/1.0", MANIFEST_ACCEPT)[0] == 200
        check_offline_mirror(platform_site(tmp_path / "site", own_image=f"{REGISTRY}/standin/"
                                           "extra:3.0", artifacts={
            "mode": "offline", "apt_proxy": applied.url,
            "registry_mirrors": {REGISTRY: registry}}), lock)
    finally:
        stop(folder)


def test_an_update_is_refused_before_anything_changes_when_the_registry_port_is_held(
        tmp_path: Path, upstreams: Upstreams, keys: KeyPair) -> None:
    loaded = platform_site(tmp_path / "site")
    platform_lock(loaded, tmp_path / "cache")
    kept = tmp_path / "old.lock.yaml"
    kept.write_text(lock_path(loaded).read_text())
    full = build_bundle(lock_path(loaded), tmp_path / "full.tar", keys.secret,
                        tmp_path / "cache")
    assert mirror_module._bundle_has_images(full.path)
    folder = tmp_path / "mirror"
    serve(full.path, keys.public, folder, "127.0.0.1", free_port(), registry_port=free_port())
    stop(folder)

    upstreams.registry.push_image("standin/extra", "3.0", b"extra")
    loaded = platform_site(tmp_path / "site", own_image=f"{REGISTRY}/standin/extra:3.0")
    platform_lock(loaded, tmp_path / "cache")
    update = build_bundle(lock_path(loaded), tmp_path / "u.tar", keys.secret,
                          tmp_path / "cache", since=kept)
    served = (folder / "root" / LOCK_NAME).read_bytes()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(BadInput, match=f"--registry-port {taken}: .* is already in use"):
            serve(update.path, keys.public, folder, "127.0.0.1", free_port(),
                  registry_port=taken)
    assert (folder / "root" / LOCK_NAME).read_bytes() == served
    assert not (folder / "update").exists()
    assert load_mirror_state(folder) is None


@pytest.mark.parametrize(("endpoint", "realm"), [
    ("https://registry.example", "file:///etc/passwd"),
    ("https://registry.example", "ftp://registry.example/token"),
    ("https://registry.example", "http://registry.example/token"),
    ("http://127.0.0.1:5000", "file:///etc/passwd"),
    ("http://127.0.0.1:5000", "/token"),
])
def test_a_token_realm_off_http_or_down_from_https_is_refused(endpoint: str,
                                                               realm: str) -> None:
    client = RegistryClient("stand-in", endpoint=endpoint)
    with pytest.raises(DeployFailed, match=f"names the token realm '{re.escape(realm)}'"):
        client._token(f'Bearer realm="{realm}",service="stand-in"', "repository:x:pull",
                      f"{endpoint}/v2/x/manifests/1")
    # Nor does a redirect reach a file: the opener speaks http(s) only.
    with pytest.raises(urllib.error.URLError, match="unknown url type"):
        client._opener.open("file:///etc/hostname", timeout=5)


def test_a_blob_that_cannot_be_hard_linked_is_copied(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = tmp_path / "blobs"

    def put(data: bytes) -> str:
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        path = blobs / "sha256" / digest.split(":")[1]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return digest

    config, layer = put(b"{}"), put(b"layer bytes" * 1000)
    manifest = put(json.dumps({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"digest": config}, "layers": [{"digest": layer}]}).encode())

    def refuse(self: Path, target: Path) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(Path, "hardlink_to", refuse)
    storage = tmp_path / "storage"
    registry_storage(storage, blobs, [(parse_reference("stand-in/x/y:1"), manifest)], "amd64")
    hexdigest = layer.split(":")[1]
    data = (storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data")
    assert data.read_bytes() == b"layer bytes" * 1000
    assert data.stat().st_nlink == 1
