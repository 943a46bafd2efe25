"""The rooms' imports point one way (the contracts in pyproject.toml, checked by import-linter), and per-source
behaviour is declared, not asked for."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

from streams.sources import SOURCES

ROOT = Path(__file__).resolve().parents[1]
SOURCE_NAMES = {*SOURCES, "stock"}  # (stock counts: a topic without a pipeline of its own)


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


def _source_dispatches(code: str) -> list[str]:
    """Comparisons of a name or attribute called ``source`` with a source's name: per-source behaviour asked
    for instead of declared (``streams.sources``)."""
    found = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            named = any(isinstance(s, ast.Name) and s.id == "source" or isinstance(s, ast.Attribute)
                        and s.attr == "source" for s in sides)
            literal = any(isinstance(s, ast.Constant) and s.value in SOURCE_NAMES for s in sides)
            if named and literal:
                found.append(ast.unparse(node))
    return found


def test_no_room_of_the_stream_asks_which_source_it_is() -> None:
    code = 'if source == "pos":\n    pass\nif self.source != "stock" and source != "all":\n    pass\n'
    assert _source_dispatches(code) == ["source == 'pos'", "self.source != 'stock'"]  # ("all" is no source)
    asked = {str(path.relative_to(ROOT)): hits for room in ("streams", "sinks", "models")
             for path in sorted((ROOT / room).rglob("*.py")) if (hits := _source_dispatches(path.read_text()))}
    assert asked == {}
