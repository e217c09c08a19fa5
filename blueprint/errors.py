"""Exit codes and the error classes that carry them."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit status of every `blueprint` command (documented in the README)."""

    OK = 0
    VALIDATION_FAILED = 1
    BAD_INPUT = 2
    DEPLOY_FAILED = 3
    ENVIRONMENT_MISSING = 4
    INTERRUPTED = 130


class BlueprintError(Exception):
    """Base of every expected error: printed as one line, exits with `exit_code`."""

    exit_code: ExitCode = ExitCode.DEPLOY_FAILED


class BadInput(BlueprintError):
    """A site, blueprint or command-line value is wrong; nothing was changed."""

    exit_code = ExitCode.BAD_INPUT


class EnvironmentMissing(BlueprintError):
    """A tool, privilege or service the command needs is not there."""

    exit_code = ExitCode.ENVIRONMENT_MISSING


class DeployFailed(BlueprintError):
    """A deploy, provision or lab operation started and did not finish."""

    exit_code = ExitCode.DEPLOY_FAILED


class ValidationFailed(BlueprintError):
    """A mandatory validation check failed or errored."""

    exit_code = ExitCode.VALIDATION_FAILED


def exit_code_of(exc: BaseException) -> ExitCode:
    """The exit code a run that ended with `exc` reports."""
    if isinstance(exc, BlueprintError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    return ExitCode.DEPLOY_FAILED
