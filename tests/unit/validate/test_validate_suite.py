"""Loading suite files: the shipped suites load, bad ones fail naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from blueprint.errors import BadInput, ExitCode
from blueprint.validate.model import load_suite

SUITES = Path(__file__).resolve().parents[3] / "validation" / "suites"


@pytest.mark.parametrize("name", ["lab", "ai-edge"])
def test_shipped_suites_load(name: str) -> None:
    suite = load_suite(SUITES / f"{name}.yaml")
    assert suite.name == name
    assert "runtime.containerd.systemd_cgroup" in {c.id for c in suite.checks}


def test_ai_edge_has_the_lab_checks_and_more_layers() -> None:
    lab = {c.id for c in load_suite(SUITES / "lab.yaml").checks}
    edge = load_suite(SUITES / "ai-edge.yaml")
    assert lab <= {c.id for c in edge.checks}
    assert {"gpu", "kubernetes", "storage", "ai"} <= {c.layer for c in edge.checks}


BAD_SUITES = [
    pytest.param(
        "name: x\nchecks:\n  - {id: os.swap_off, mandatory: true, severity: high}\n",
        "checks[0] (os.swap_off).severity: Extra inputs are not permitted",
        id="unknown-key",
    ),
    pytest.param(
        "name: x\nchecks:\n  - {id: os.swap_off}\n",
        "checks[0] (os.swap_off).mandatory: Field required",
        id="mandatory-missing",
    ),
    pytest.param(
        "name: x\nchecks:\n  - {id: swap, mandatory: true}\n",
        "check id 'swap' is not of the form <layer>.<name>",
        id="id-without-layer",
    ),
    pytest.param(
        "name: x\nchecks:\n  - {id: network.mtu, mandatory: true}\n",
        "layer 'network' is not known; use one of hardware, os",
        id="unknown-layer",
    ),
    pytest.param(
        "name: x\nchecks:\n  - {id: os.swap_off, mandatory: true}\n"
        "  - {id: os.swap_off, mandatory: false}\n",
        "check 'os.swap_off' is listed twice",
        id="duplicate",
    ),
    pytest.param(
        "name: x\nchecks:\n  - {id: os.swap_off, mandatory: true, timeout: 0}\n",
        "timeout: Input should be greater than 0",
        id="zero-timeout",
    ),
    pytest.param(
        "name: x\npolicy: {listening_ports: [22/sctp, 70000/tcp]}\nchecks: []\n",
        "policy.listening_ports: Value error, 22/sctp, 70000/tcp: use <port>/tcp or <port>/udp",
        id="bad-port",
    ),
    pytest.param(
        "name: x\npolicy: {lynis: {min_hardening_index: 60, must_pass: [ssh-7408]}}\n"
        "checks: []\n",
        "policy.lynis.must_pass: Value error, ssh-7408: not a lynis test such as SSH-7408",
        id="bad-lynis-test",
    ),
    pytest.param(
        "name: x\npolicy: {lynis: {min_hardening_index: 101}}\nchecks: []\n",
        "policy.lynis.min_hardening_index: Input should be less than or equal to 100",
        id="lynis-index-over-100",
    ),
    pytest.param("name: x\nchecks: [\n", "not valid YAML", id="not-yaml"),
    pytest.param("- {id: os.swap_off, mandatory: true}\n", "(top)", id="a-bare-list"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_SUITES)
def test_bad_suite_is_a_clear_error(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    with pytest.raises(BadInput) as caught:
        load_suite(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)
    assert caught.value.exit_code is ExitCode.BAD_INPUT


def test_missing_suite_file(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="cannot read the suite file"):
        load_suite(tmp_path / "absent.yaml")
