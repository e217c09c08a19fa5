"""The node supervisor: boots again on exit 133, stops on anything else."""

from __future__ import annotations

from pathlib import Path

from blueprint.lab.supervise import main


def test_restarts_after_reboot_exit_then_stops(tmp_path: Path) -> None:
    count = tmp_path / "count"
    script = (
        f"n=$(cat {count} 2>/dev/null || echo 0); echo $((n+1)) > {count}; "
        '[ "$n" -lt 2 ] && exit 133; exit 7'
    )
    code = main(["--pidfile", str(tmp_path / "pid"), "--", "sh", "-c", script])
    assert code == 7
    assert count.read_text().strip() == "3"
    assert not (tmp_path / "pid").exists()


def test_ordinary_exit_is_not_restarted(tmp_path: Path) -> None:
    assert main(["--pidfile", str(tmp_path / "pid"), "--", "true"]) == 0


def test_usage_without_command(tmp_path: Path) -> None:
    assert main(["--pidfile", str(tmp_path / "pid")]) == 2
