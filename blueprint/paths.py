"""Where the project's own playbooks, roles, validation suites and blueprints live."""

from __future__ import annotations

import os
from pathlib import Path

# The product runs from its checkout (as Kubespray does): playbooks, roles and validation
# suites sit beside the package. BLUEPRINT_HOME points elsewhere for an installed copy.
PROJECT_ROOT = Path(os.environ.get("BLUEPRINT_HOME", Path(__file__).resolve().parent.parent))
PLAYBOOKS_DIR = PROJECT_ROOT / "playbooks"
ROLES_DIR = PROJECT_ROOT / "roles"
VALIDATION_DIR = PROJECT_ROOT / "validation"
BUILTIN_BLUEPRINTS_DIR = Path(__file__).resolve().parent / "blueprints"
