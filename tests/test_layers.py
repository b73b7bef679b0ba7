"""The direction of imports (README "Code map"): cli -> pipeline -> (model | cache) -> errors, lazy imports included.

The contract lives in pyproject.toml ([tool.importlinter]); import-linter checks it over every module of the
installed package, function-level imports too.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint(cwd: Path, path: Path | None = None) -> subprocess.CompletedProcess:
    """import-linter's `lint-imports` in `cwd` (which holds the contract), with `path` first on sys.path."""
    code = (f"import sys; sys.path.insert(0, {str(path)!r}); " if path else "") + \
        "from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)


def test_imports_run_one_way():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_the_check_catches_a_lazy_import_against_the_direction(tmp_path):
    pkg = tmp_path / "layered"
    for sub in ("model", "pipeline"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "model" / "net.py").write_text("def f():\n    from layered.pipeline import x  # hides a cycle\n")
    (pkg / "pipeline" / "x.py").write_text("import layered.model.net\n")
    (tmp_path / ".importlinter").write_text(
        "[importlinter]\nroot_package = layered\n\n[importlinter:contract:one]\nname = one way\ntype = layers\n"
        "layers =\n    layered.pipeline\n    layered.model\n")
    result = lint(tmp_path, tmp_path)
    assert result.returncode != 0
    assert "layered.model.net -> layered.pipeline" in result.stdout
