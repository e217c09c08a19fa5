"""Loads the single source of the GPU rules: the gpu_facts module in the gpu_driver role."""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from types import ModuleType

from blueprint.errors import EnvironmentMissing
from blueprint.paths import ROLES_DIR

RULES_FILE = ROLES_DIR / "gpu_driver" / "library" / "gpu_facts.py"
_MODULE_NAME = "blueprint_gpu_facts"


@cache
def rules() -> ModuleType:
    """The gpu_facts module file, imported once as a plain Python module."""
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, RULES_FILE)
    if spec is None or spec.loader is None or not RULES_FILE.is_file():
        msg = f"{RULES_FILE} is missing from this checkout; the GPU rules live there"
        raise EnvironmentMissing(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module
