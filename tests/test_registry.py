"""Registry behaviour, config conversion, and the rule that the library never loads Streamlit."""
import dataclasses
import subprocess
import sys

import pytest

from pruning.registry import Registry, UnknownNameError, build_config


def test_register_get_and_duplicates():
    reg = Registry("widget")

    @reg.register("a", description="first")
    def a():
        return 1

    assert reg.get("a") is a and reg.names() == ["a"] and "a" in reg
    assert reg.entry("a").description == "first"
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(lambda: 2)
    with pytest.raises(UnknownNameError, match="unknown widget 'b'; choose one of: a"):
        reg.get("b")


@dataclasses.dataclass(frozen=True)
class Cfg:
    lam: float = 5.0
    steps: int = 3
    flag: bool = False
    block: tuple = (1, 4)


def test_build_config_converts_cli_strings():
    cfg = build_config(Cfg, {"lam": "2.5", "steps": "7", "flag": "yes", "block": "2x2"}, "method m")
    assert cfg == Cfg(lam=2.5, steps=7, flag=True, block=(2, 2))
    with pytest.raises(ValueError, match="has no parameter nope; valid: lam, steps, flag, block"):
        build_config(Cfg, {"nope": "1"}, "method m")
    with pytest.raises(ValueError, match="cannot read 'x' as a whole number"):
        build_config(Cfg, {"steps": "x"}, "method m")
    with pytest.raises(ValueError, match="takes no parameters"):
        build_config(None, {"a": 1}, "method m")


def test_library_never_imports_streamlit():
    code = ("import sys, pruning, pruning.session, pruning.cli, pruning.methods, pruning.models, "
            "pruning.data, pruning.export; print('streamlit' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
