"""Suite-wide setup. The example third-party strategy in tests/plugin is made importable *before* collection, so the
contract tests (parametrised over `list_strategies()`) cover it like a built-in."""

from __future__ import annotations

import sys
from pathlib import Path

PLUGIN_DIR = Path(__file__).parent / "plugin"
sys.path.insert(0, str(PLUGIN_DIR))
