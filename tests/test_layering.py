"""The app's layers, read from the source with ``ast`` (every import, lazy ones inside functions
too): the library under the UI, the job engine and the chart builders free of Streamlit, pages
on top of ``ui`` and ``pruning`` only.

The runtime checks (``test_registry``, ``test_jobs``) see what one import loads; these see every
module and every code path, including imports that only run when a function is called.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the project's own top-level packages and scripts; everything else is a third-party library
FIRST_PARTY = {"pruning", "ui", "pages", "app", "tests", "conftest"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Dotted names of every module ``path`` imports; ``from a import b`` counts as ``a.b`` when
    ``a/b.py`` or the package ``a/b/`` exists in the project, else as ``a``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            folder = ROOT.joinpath(*node.module.split("."))
            for alias in node.names:
                if (folder / f"{alias.name}.py").exists() or (folder / alias.name).is_dir():
                    found.add(f"{node.module}.{alias.name}")
    return found


def source_of(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def closure(module: str) -> set[str]:
    """Every module ``module`` reaches through the project's own modules (third-party libraries
    are listed, not followed)."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = source_of(name)
        if path is not None and name.split(".")[0] in FIRST_PARTY:
            todo.extend(imports(path))
    return seen - {module}


def tops(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


def files(*patterns: str) -> list[Path]:
    return sorted(path for pattern in patterns for path in ROOT.glob(pattern))


def test_the_reader_sees_lazy_and_from_imports(tmp_path):
    """The check itself: an import inside a function and ``from ui.charts import x`` are found."""
    sample = tmp_path / "sample.py"
    sample.write_text("from ui.charts import training\n"
                      "def f():\n    import streamlit as st\n    from pruning import store\n")
    assert {"ui.charts.training", "streamlit", "pruning.store"} <= imports(sample)
    assert "streamlit" in tops(closure("ui.live"))


@pytest.mark.parametrize("path", files("pruning/**/*.py"), ids=lambda p: module_name(p))
def test_the_library_imports_neither_streamlit_nor_the_app(path):
    assert not tops(imports(path)) & {"streamlit", "ui", "pages", "app"}


@pytest.mark.parametrize("module", ["ui.jobs", "ui.masks_view", "ui.safe_text"]
                         + [module_name(p) for p in files("ui/charts/*.py")])
def test_the_job_engine_and_the_chart_builders_reach_no_streamlit(module):
    reached = closure(module)
    assert "streamlit" not in tops(reached), sorted(reached)


@pytest.mark.parametrize("path", files("app.py", "pages/*.py"), ids=lambda p: p.name)
def test_pages_build_on_ui_and_pruning_only(path):
    assert tops(imports(path)) & FIRST_PARTY <= {"ui", "pruning"}


@pytest.mark.parametrize("path", files("ui/**/*.py"), ids=lambda p: module_name(p))
def test_ui_never_imports_pages_or_tests(path):
    assert not tops(imports(path)) & {"pages", "app", "tests", "conftest"}


def test_every_ui_module_is_imported_somewhere():
    """A module no page, app or other ui module imports is dead code left behind by a move."""
    used = set()
    for path in files("app.py", "pages/*.py", "ui/**/*.py"):
        used |= imports(path)
    modules = {module_name(p) for p in files("ui/**/*.py")} - {"ui", "ui.charts"}
    assert modules <= used, sorted(modules - used)
