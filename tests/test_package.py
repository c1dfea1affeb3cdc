"""The package: pyproject.toml's console script, extras and tool settings, and what importing the
library and the CLI loads (no Streamlit, pandas or plotly in the library; no torch for
``pruning --help``)."""
from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _names(requirements: list[str]) -> set[str]:
    return {r.split(">")[0].split("=")[0].split("[")[0].strip().lower() for r in requirements}


def test_console_script_is_the_cli_main():
    module, _, attribute = PYPROJECT["project"]["scripts"]["pruning"].partition(":")
    assert getattr(importlib.import_module(module), attribute).__name__ == "main"


def test_extras_keep_app_and_test_tools_out_of_the_library():
    project = PYPROJECT["project"]
    core, extras = _names(project["dependencies"]), project["optional-dependencies"]
    assert {"torch", "torchvision", "torch-pruning"} <= core
    assert not core & {"streamlit", "pandas", "plotly", "pytest", "playwright", "ruff"}
    assert {"streamlit", "pandas", "plotly"} <= _names(extras["app"])
    assert {"pytest", "pytest-xdist", "playwright", "pruning-explorer"} <= _names(extras["test"])
    assert "pruning-explorer[app]" in extras["test"]  # the tests drive the app
    # requirements.txt installs this project with its extras: one list of dependencies
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines == ["-e .[app,test]"]


def test_pytest_settings_live_in_pyproject():
    settings = PYPROJECT["tool"]["pytest"]["ini_options"]
    assert settings["testpaths"] == ["tests"] and "." in settings["pythonpath"]
    assert any(m.startswith("browser:") for m in settings["markers"])
    assert not (ROOT / "pytest.ini").exists()  # a pytest.ini would shadow these settings
    assert PYPROJECT["tool"]["ruff"]["line-length"] == 100


def test_the_library_loads_no_app_modules():
    code = ("import sys, pruning.session, pruning.cli, pruning.methods, pruning.models, "
            "pruning.data; print(sorted(m for m in ('streamlit', 'pandas', 'plotly') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
