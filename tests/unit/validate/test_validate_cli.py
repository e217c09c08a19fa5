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
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:5]]
            for line in done.stdout.splitlines() if line.startswith("│")}
    assert rows["os.swap_off"] == ["os", "mandatory", "yes"]
    assert rows["os.journald_limit"] == ["os", "optional",
                                         "no: optional: runs with --include-optional"]
    assert rows["hardware.cpu.count"] == ["hardware", "mandatory", "yes"]
    assert "checks would run on each node" in done.stdout
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
