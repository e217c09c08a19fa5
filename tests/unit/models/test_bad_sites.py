"""Every bad site file is refused before anything runs, with the exact message and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from blueprint.errors import BadInput, ExitCode
from blueprint.loader import load_site

CASES = sorted((Path(__file__).parent / "bad_sites").glob("*.yaml"))


def expected_message(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} has no '# expect:' first line"
    text = first.removeprefix("# expect: ").replace("\\n", "\n")
    return text.format(path=path, dir=path.parent)


def test_there_are_at_least_fifteen_cases() -> None:
    assert len(CASES) >= 15


@pytest.mark.parametrize("path", CASES, ids=[case.stem for case in CASES])
def test_bad_site_is_refused_with_exact_message(path: Path) -> None:
    with pytest.raises(BadInput) as caught:
        load_site(path)
    assert str(caught.value) == expected_message(path)
    assert caught.value.exit_code == ExitCode.BAD_INPUT
