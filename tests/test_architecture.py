"""The package's shape: layers that only point down, no import cycles, a linted public API."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import import_graph

ROOT = Path(__file__).resolve().parents[1]


def test_every_module_belongs_to_a_layer():
    g = import_graph.graph()
    assert len(g) > 50  # the graph really was read
    for module in g:
        import_graph.layer_of(module)  # raises naming the module and where to add it


def test_layers_only_point_down():
    g = import_graph.graph()
    assert import_graph.upward_edges(g) == []


def test_no_import_cycles():
    assert import_graph.cycles(import_graph.graph()) == []


def test_the_checks_catch_what_they_are_for():
    """An upward edge and a cycle planted in a copy of the graph are both found."""
    g = {k: set(v) for k, v in import_graph.graph().items()}
    g["maml_probe.maml"].add("maml_probe.train")              # engine -> training loop
    assert ("maml_probe.maml", "maml_probe.train") in import_graph.upward_edges(g)
    assert any({"maml_probe.maml", "maml_probe.train"} <= set(c) for c in import_graph.cycles(g))


def test_import_reading_resolves_relative_and_lazy_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "maml_probe"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "io.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import leaf\n")
    (pkg / "sub" / "leaf.py").write_text("def f():\n    from ..io import x\n")
    monkeypatch.setattr(import_graph, "ROOT", pkg)
    g = import_graph.graph()
    assert g["maml_probe.sub"] == {"maml_probe.sub.leaf"}
    assert g["maml_probe.sub.leaf"] == {"maml_probe.io"}


def test_public_api_resolves():
    import maml_probe

    assert maml_probe.__version__
    for name in maml_probe.__all__:
        assert getattr(maml_probe, name) is not None, name
    with pytest.raises(AttributeError, match="no_such_name"):
        maml_probe.no_such_name  # noqa: B018


def test_importing_the_package_stays_light():
    """``import maml_probe`` loads no engine, data or notebook code until a name is used."""
    code = ("import sys, maml_probe; "
            "print(sorted(m for m in sys.modules if m.startswith('maml_probe.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True)
    assert out.stdout.strip() == "['maml_probe._version']"


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.fail("ruff is not installed: run `bash scripts/setup.sh` (it is a dev dependency)")
    out = subprocess.run([ruff, "check", "maml_probe", "tests", "benchmarks"], capture_output=True,
                         text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
