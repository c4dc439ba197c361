"""The codebase's own rules: ruff, the layers of the data flow, a quick import, modules of
a readable size, a documented public API."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import asm_dask

ROOT = Path(__file__).parents[1]
#: a module longer than this says in its docstring why it is one piece
MAX_LINES = 400


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    assert found is not None, f"{name} is not installed: pip install -e '.[test]'"
    return found


def test_ruff_finds_nothing():
    done = subprocess.run([_tool("ruff"), "check", "asm_dask", "tests", "benchmarks", "docs"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_layer_imports_only_the_layers_below_it():
    """import-linter's layers contract (pyproject.toml): the data flow is the layout."""
    done = subprocess.run([_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "1 kept, 0 broken" in done.stdout, done.stdout + done.stderr


def test_import_asm_dask_is_quick():
    """A notebook's first cell: 0.3 s at most (the heavy libraries load when first used)."""
    code = "import time; t = time.perf_counter(); import asm_dask; print(time.perf_counter() - t)"
    seconds = min(float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout) for _ in range(3))
    assert seconds < 0.3, f"import asm_dask took {seconds:.2f} s"
    loaded = subprocess.run([sys.executable, "-c", "import sys, asm_dask; print(' '.join(sorted(sys.modules)))"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert not {"sklearn", "distributed", "geopandas", "matplotlib", "pandas"} & set(loaded)


def test_modules_are_of_a_readable_size():
    for path in sorted((ROOT / "asm_dask").rglob("*.py")):
        lines = len(path.read_text().splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert lines <= MAX_LINES or "One piece:" in doc, \
            f"{path.relative_to(ROOT)}: {lines} lines; split it, or say in its docstring why it is one piece"


def test_every_public_name_is_documented():
    reference = "\n".join(p.read_text() for p in (ROOT / "docs" / "reference").glob("*.md"))
    for name in asm_dask.__all__:
        if name == "__version__":
            continue
        obj = getattr(asm_dask, name)
        assert (obj.__doc__ or "").strip(), f"asm_dask.{name} has no docstring"
        assert f".{name}" in reference, f"asm_dask.{name} is not in the reference (docs/reference/)"
