"""The rooms' imports point one way (the contracts in pyproject.toml, checked by import-linter)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    return subprocess.run([exe, "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(cwd), "PATH": str(Path(sys.executable).parent)})


def test_the_layer_contracts_hold() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_forbidden_import_breaks_a_contract(tmp_path: Path) -> None:
    # The same contract on a tiny tree with a model that imports a stream: the checker must say so.
    for room, body in (("models", "from streams import x\n"), ("streams", "x = 1\n")):
        (tmp_path / room).mkdir()
        (tmp_path / room / "__init__.py").write_text(body)
    (tmp_path / ".importlinter").write_text(
        "[importlinter]\nroot_packages =\n    models\n    streams\n\n"
        "[importlinter:contract:models]\nname = models import nothing\ntype = forbidden\n"
        "source_modules =\n    models\nforbidden_modules =\n    streams\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0 and "models import nothing" in result.stdout
