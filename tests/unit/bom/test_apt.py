"""What apt prints and keeps, read as the lock needs it."""

from __future__ import annotations

from pathlib import Path

from blueprint.bom.apt import (
    URI_LINE,
    AptRoot,
    _list_name,
    _split_deb_name,
    read_packages_index,
)


def test_uri_lines_with_and_without_a_hash() -> None:
    # apt prints no hash for the security suite's packages: such a line must not be lost.
    security = ("'http://deb.debian.org/debian-security/pool/updates/main/a/apt/"
                "apt-transport-https_2.6.2_all.deb' apt-transport-https_2.6.2_all.deb 25604")
    main = ("'http://deb.debian.org/debian/pool/main/o/openssh/openssh-server_1%3a9.2p1-2%2b"
            "deb12u7_amd64.deb' openssh-server_1%3a9.2p1-2+deb12u7_amd64.deb 456 MD5Sum:aa")
    first, second = URI_LINE.match(security), URI_LINE.match(main)
    assert first is not None and first["size"] == "25604"
    assert second is not None
    assert _split_deb_name(second["file"]) == ("openssh-server", "1:9.2p1-2+deb12u7", "amd64")


def test_packages_index_fields(tmp_path: Path) -> None:
    index = tmp_path / "Packages"
    index.write_text(
        "Package: curl\nSource: curl (7.88.1-10)\nVersion: 7.88.1-10+deb12u15\n"
        "Architecture: amd64\nDescription: tool\n multi-line\nSize: 316\nSHA256: " + "c" * 64
        + "\n\nPackage: tzdata\nVersion: 2025b-0+deb12u2\nArchitecture: all\nSHA256: "
        + "d" * 64 + "\n")
    found = read_packages_index(index)
    assert found[("curl", "7.88.1-10+deb12u15", "amd64")]["Source"] == "curl (7.88.1-10)"
    assert found[("tzdata", "2025b-0+deb12u2", "all")]["SHA256"] == "d" * 64


def test_list_names_are_apts() -> None:
    assert _list_name("http://deb.debian.org/debian-security/dists/bookworm-security/InRelease") \
        == "deb.debian.org_debian-security_dists_bookworm-security_InRelease"


def test_index_files_are_the_compressed_forms_the_release_lists(tmp_path: Path) -> None:
    """Packages and Translation-en as apt fetches them: bookworm lists only their .xz forms."""
    fixtures = Path(__file__).parent / "fixtures" / "inrelease"
    root = AptRoot(tmp_path, release="bookworm")
    lists = tmp_path / "state" / "lists"
    lists.mkdir(parents=True)
    recorded = {"bookworm": "bookworm-updates", "bookworm-updates": "bookworm-updates",
                "bookworm-security": "bookworm-security"}  # the release's own is 150 kB
    for base, suite in root.suites():
        text = (fixtures / f"{recorded[suite]}.InRelease").read_bytes()
        (lists / _list_name(f"{base}/dists/{suite}/InRelease")).write_bytes(text)

    files = {f.path: f for f in root.index_files()}

    security = "dists/bookworm-security/main"
    assert sorted(path for path in files if path.startswith(security)) == [
        f"{security}/binary-amd64/Packages.xz", f"{security}/i18n/Translation-en.xz"]
    translation = files[f"{security}/i18n/Translation-en.xz"]
    assert (translation.size, translation.sha256) == (
        241760, "1ff135ad08ffa112d4a8740ec66ae13c868cab1095dd03ea97b4ccfb1cb2d190")
    assert translation.url == ("http://deb.debian.org/debian-security/dists/bookworm-security/"
                               "main/i18n/Translation-en.xz")
    assert len([path for path in files if path.endswith("InRelease")]) == 3
