"""README.md stays true: its strategy example runs when pasted, and CI runs the test command it gives."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_adding_a_strategy_example_runs_when_pasted() -> None:
    example = next(b for b in code_blocks("python") if "@register_strategy" in b)
    result = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=120, cwd="/")
    assert result.returncode == 0, result.stderr
    assert "tensor(" in result.stdout


def test_ci_runs_the_test_command_the_readme_gives() -> None:
    section = README.split("## Test", 1)[1]
    command = re.search(r"```bash\n(.*?)\n```", section, flags=re.S).group(1).strip()
    assert command in (ROOT / ".ci" / "run").read_text()
