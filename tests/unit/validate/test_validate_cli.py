"""`blueprint validate --list` and output options: answered before any node is touched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SITE = Path(__file__).resolve().parents[1] / "fixtures" / "sites" / "full.yaml"


def blueprint(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "blueprint.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


def test_list_names_each_check_kind_and_whether_it_runs(tmp_path: Path) -> None:
    done = blueprint("validate", str(SITE), "--state-dir", str(tmp_path), "--list")

    assert done.returncode == 0, done.stderr
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:6]]
            for line in done.stdout.splitlines() if line.startswith("│")}
    assert rows["os.swap_off"] == ["os", "mandatory", "each node", "yes"]
    assert rows["os.journald_limit"] == ["os", "optional", "each node",
                                         "no: optional: runs with --include-optional"]
    assert rows["hardware.cpu.count"] == ["hardware", "mandatory", "each node", "yes"]
    assert "checks would run: " in done.stdout and "0 once against the cluster" in done.stdout
    # Listing is not a run: nothing is recorded.
    assert not (tmp_path / "runs").exists()


def test_list_with_optional_and_a_layer(tmp_path: Path) -> None:
    done = blueprint("validate", str(SITE), "--state-dir", str(tmp_path), "--list",
                     "--include-optional", "--layer", "os")

    assert done.returncode == 0, done.stderr
    assert "os.journald_limit" in done.stdout and "security." not in done.stdout
    assert "no: optional" not in done.stdout


def test_unknown_layer_is_bad_input(tmp_path: Path) -> None:
    done = blueprint("validate", str(SITE), "--state-dir", str(tmp_path), "--list",
                     "--layer", "network")

    assert done.returncode == 2
    assert done.stderr.startswith("error: layer network has no check in suite lab")


def test_report_path_that_is_a_folder_is_bad_input(tmp_path: Path) -> None:
    done = blueprint("validate", str(SITE), "--state-dir", str(tmp_path), "--html",
                     str(tmp_path))

    assert done.returncode == 2
    assert f"Invalid value for '--html': File '{tmp_path}' is a directory." in done.stderr
    assert not (tmp_path / "runs").exists()


def test_report_path_under_a_file_is_bad_input(tmp_path: Path) -> None:
    a_file = tmp_path / "plain"
    a_file.write_text("")
    done = blueprint("validate", str(SITE), "--state-dir", str(tmp_path), "--json",
                     str(a_file / "summary.json"))

    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {a_file / 'summary.json'}: {a_file} is not a folder"
    assert not (tmp_path / "runs").exists()


def test_cluster_checks_are_listed_as_run_once(tmp_path: Path) -> None:
    edge = tmp_path / "edge.yaml"
    edge.write_text(SITE.read_text().replace("blueprint: lab", "blueprint: ai-edge"))
    (tmp_path / "good_key").write_bytes((SITE.parent / "good_key").read_bytes())
    done = blueprint("validate", str(edge), "--state-dir", str(tmp_path), "--list")

    assert done.returncode == 0, done.stderr
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:6]]
            for line in done.stdout.splitlines() if line.startswith("│")}
    assert rows["kubernetes.cluster.nodes_ready"] == [
        "kubernetes", "show-stopper", "the cluster, once", "yes"]
    assert rows["kubernetes.certs.expiry"][2] == "each node"


def test_kubeconfig_or_site_is_needed(tmp_path: Path) -> None:
    done = blueprint("validate")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: give a SITE (its site file or name), or --kubeconfig FILE to validate a cluster")


def test_missing_kubeconfig_is_bad_input(tmp_path: Path) -> None:
    done = blueprint("validate", "--kubeconfig", str(tmp_path / "nope"))
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: --kubeconfig {tmp_path / 'nope'}: no such file"


def test_kubeconfig_without_context_is_bad_input_and_records_nothing(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text("apiVersion: v1\nkind: Config\ncontexts: [{name: a, context: {}}]\n")
    done = subprocess.run(
        [sys.executable, "-m", "blueprint.cli", "validate", "--kubeconfig", str(config)],
        capture_output=True, text=True, check=False, cwd=tmp_path,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: {config}: current-context is not set; pass --context (one of: a)")
    assert not (tmp_path / ".state").exists()


def test_suite_goes_only_with_a_bare_kubeconfig(tmp_path: Path) -> None:
    done = blueprint("validate", str(SITE), "--state-dir", str(tmp_path), "--suite", "lab")
    assert done.returncode == 2
    assert "--suite goes with --kubeconfig and no SITE" in done.stderr
