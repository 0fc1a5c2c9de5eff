"""No test or benchmark starts a bare ``python``/``python3`` from PATH (the runtime guard in
tests/conftest.py catches what runs in the suite; this also covers bench/ scripts, which
the suite runs only in smoke form)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BARE = {"python", "python3"}


def _argv_literals(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.List | ast.Tuple) and node.elts:
            first = node.elts[0]
            if not (isinstance(first, ast.Constant) and first.value in BARE):
                continue
            second = node.elts[1] if len(node.elts) > 1 else None
            if not isinstance(second, ast.Constant) or not isinstance(second.value, str) \
                    or second.value.startswith("-") or second.value.endswith(".py"):
                lines.append(node.lineno)  # an argv: python -m/-c/script, or a variable
    return lines


def test_no_argv_starts_with_a_bare_python() -> None:
    found = []
    for folder in ("tests", "bench", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            found += [f"{path.relative_to(ROOT)}:{line}" for line in _argv_literals(tree)]
    assert not found, "start sys.executable, not a python from PATH: " + ", ".join(found)


def test_the_scan_sees_a_bare_python() -> None:
    assert _argv_literals(ast.parse('run(["python", "-m", "gateway"])')) == [1]
    assert _argv_literals(ast.parse('run(["python3", "bench/x.py"])')) == [1]
    assert _argv_literals(ast.parse('run([sys.executable, "-m", "gateway"])')) == []
    assert _argv_literals(ast.parse('PACKAGES = ["python3", "python3-venv"]')) == []
