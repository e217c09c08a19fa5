"""Console and log set-up shared by every command: redacted, one line per expected error."""

from __future__ import annotations

import logging
from pathlib import Path

from rich.console import Console

from blueprint.secrets import REDACTOR

log = logging.getLogger(__name__)

CONSOLE = Console(stderr=False, highlight=False, soft_wrap=True)
ERR_CONSOLE = Console(stderr=True, highlight=False, soft_wrap=True)


def setup_logging(verbose: bool, debug: bool) -> None:
    """INFO phases (or DEBUG command lines) to stderr, secrets masked."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(REDACTOR)
    handler.setLevel(logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING)
    root = logging.getLogger("blueprint")
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)


def attach_run_log(path: Path) -> logging.Handler:
    """Everything the product logs during one run, at DEBUG, into the run's folder."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(REDACTOR)
    handler.setLevel(logging.DEBUG)
    logging.getLogger("blueprint").addHandler(handler)
    logging.getLogger("blueprint").setLevel(logging.DEBUG)
    return handler


def detach_run_log(handler: logging.Handler) -> None:
    logging.getLogger("blueprint").removeHandler(handler)
    handler.close()
