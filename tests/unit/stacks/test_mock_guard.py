"""The trap this suite guards against: checks inside an Output callback that never runs."""

from __future__ import annotations

import pulumi
import pytest
from platform_helpers import Checked, make_config, require_checked

from blueprint.platform.preview import ProgramRun, run_program


def test_a_check_in_an_unawaited_output_is_seen_as_no_check() -> None:
    counter = Checked("guard-demo")

    # Without the runtime awaiting it, this callback never runs: a plain test would pass.
    pulumi.Output.from_input("value").apply(lambda value: counter.that(value == "other"))

    assert counter.count == 0  # the `checked` fixture fails a test that stays at zero


def test_the_program_run_registers_resources(default_run: ProgramRun,
                                            checked: Checked) -> None:
    checked.that(len(default_run.resources) > 80)



def _runs_the_program_and_checks_nothing() -> None:
    run_program(make_config())


def test_a_test_that_runs_the_program_itself_must_count_its_checks() -> None:
    class Item:
        nodeid = "test_uncounted"
        fixturenames = ("tmp_path",)
        function = staticmethod(_runs_the_program_and_checks_nothing)

    with pytest.raises(pytest.fail.Exception, match="without the `checked` counter"):
        require_checked(Item())  # type: ignore[arg-type]
