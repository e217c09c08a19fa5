"""The trap this suite guards against: checks inside an Output callback that never runs."""

from __future__ import annotations

import pulumi
from platform_helpers import Checked

from blueprint.platform.preview import ProgramRun


def test_a_check_in_an_unawaited_output_is_seen_as_no_check() -> None:
    counter = Checked("guard-demo")

    # Without the runtime awaiting it, this callback never runs: a plain test would pass.
    pulumi.Output.from_input("value").apply(lambda value: counter.that(value == "other"))

    assert counter.count == 0  # the `checked` fixture fails a test that stays at zero


def test_the_program_run_registers_resources(default_run: ProgramRun,
                                            checked: Checked) -> None:
    checked.that(len(default_run.resources) > 80)
