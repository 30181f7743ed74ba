"""The layering contract (tests/support/layering.py, docs/architecture.md): src/portatlas's
imports run one way (front ends -> rendering -> facade -> domain -> core), web/ never imports
cli/, and there is no import cycle, function-level imports included.

The checker is shown to fail on synthetic packages that break each rule, so a green run means
something."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import layering

SRC = Path(__file__).resolve().parents[1] / "src" / "portatlas"


def test_every_module_has_a_layer():
    for module in layering.modules(SRC):
        layering.place(module)  # raises for a module no layer claims


def test_no_import_goes_up_a_layer():
    bad = layering.violations(layering.imports(SRC))
    assert not bad, "layer violations:\n  " + "\n  ".join(bad)


def test_no_import_cycle():
    found = layering.imports(SRC)
    groups = layering.cycles(found)
    assert not groups, "import cycles:\n  " + "\n  ".join(
        f"{group}: {layering.cycle_edges(found, group)}" for group in groups)


def test_exceptions_are_explained():
    for pair, reason in layering.EXCEPTIONS.items():
        assert len(reason) > 20, f"exception {pair} needs a reason"


def test_function_level_imports_are_seen():
    found = layering.imports(SRC)
    assert any(i.function_level for i in found), "the walker must read imports inside functions"


def test_lazy_imports_say_why_in_the_modules_held_to_it():
    bad = layering.unexplained_lazy_imports(SRC)
    assert not bad, "function-level imports without a reason:\n  " + "\n  ".join(bad)


# -- the checker itself, on synthetic packages ----------------------------------------------------
def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "portatlas"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for sub in {p.parent for p in root.rglob("*.py")}:
        (sub / "__init__.py").touch()
    return root


def test_a_domain_module_importing_the_cli_fails(tmp_path):
    root = _package(tmp_path, {
        "cli/output.py": "",
        "local/text.py": "def f():\n    from portatlas.cli.output import Style\n",
    })
    bad = layering.violations(layering.imports(root))
    assert bad == ["portatlas.local.text:2 -> portatlas.cli.output (domain imports front)"]


def test_a_domain_module_importing_the_renderers_fails(tmp_path):
    root = _package(tmp_path, {"render/terminal.py": "",
                               "scan/output.py": "from portatlas.render import terminal\n"})
    assert layering.violations(layering.imports(root)) == [
        "portatlas.scan.output:1 -> portatlas.render.terminal (domain imports render)"]


def test_core_importing_the_domain_fails_even_under_type_checking(tmp_path):
    root = _package(tmp_path, {"atlas.py": "", "model.py":
                               "TYPE_CHECKING = False\nif TYPE_CHECKING:\n    import portatlas.atlas\n"})
    assert layering.violations(layering.imports(root)) == [
        "portatlas.model:3 -> portatlas.atlas (core imports domain)"]


def test_the_web_going_through_the_cli_fails(tmp_path):
    root = _package(tmp_path, {"cli/local.py": "",
                               "web/live.py": "def look():\n    from ..cli import local\n"})
    assert layering.violations(layering.imports(root)) == [
        "portatlas.web.live:2 -> portatlas.cli.local (portatlas.web never imports portatlas.cli)"]


def test_a_cycle_through_a_function_level_import_fails(tmp_path):
    root = _package(tmp_path, {
        "scan/scanner.py": "from portatlas.scan import wildcard\n",
        "scan/wildcard.py": "def run():\n    from portatlas.scan.scanner import run_async\n",
    })
    found = layering.imports(root)
    assert layering.cycles(found) == [["portatlas.scan.scanner", "portatlas.scan.wildcard"]]
    assert layering.cycle_edges(found, ["portatlas.scan.scanner", "portatlas.scan.wildcard"]) == [
        "portatlas.scan.scanner:1 -> portatlas.scan.wildcard",
        "portatlas.scan.wildcard:2 -> portatlas.scan.scanner"]


def test_type_checking_imports_make_no_cycle(tmp_path):
    root = _package(tmp_path, {
        "atlas.py": "from portatlas import ranking\n",
        "ranking.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from portatlas.atlas import Atlas\n",
    })
    assert layering.cycles(layering.imports(root)) == []


def test_a_module_in_no_layer_is_reported(tmp_path):
    root = _package(tmp_path, {"newthing/core.py": ""})
    with pytest.raises(KeyError, match="portatlas.newthing"):
        for module in layering.modules(root):
            layering.place(module)


def test_importing_the_version_is_not_importing_the_facade(tmp_path):
    root = _package(tmp_path, {"scan/nmap_xml.py": "from portatlas import __version__\n",
                               "kb/store.py": "from portatlas import lookup\n"})
    assert layering.violations(layering.imports(root)) == [
        "portatlas.kb.store:1 -> portatlas (domain imports facade)"]


def test_an_unexplained_lazy_import_is_reported(tmp_path):
    root = _package(tmp_path, {"render/x.py": (
        "def a():\n    import json\n"
        "def b():\n    import re  # only for styled text\n"
        "def c():\n    # only with --identify\n    from portatlas import vocab\n    import ssl\n")})
    assert layering.unexplained_lazy_imports(root, ("portatlas.render",)) == [
        "portatlas.render.x:2: import json"]


def test_packages_still_to_follow_are_left_out_of_the_lazy_import_rule(tmp_path):
    root = _package(tmp_path, {"render/x.py": "def a():\n    import json\n",
                               "scan/y.py": "def b():\n    import re\n"})
    assert layering.unexplained_lazy_imports(root, ("portatlas",), ("portatlas.scan",)) == [
        "portatlas.render.x:2: import json"]
    assert layering.unexplained_lazy_imports(root, ("portatlas",), ()) == [
        "portatlas.render.x:2: import json", "portatlas.scan.y:2: import re"]
