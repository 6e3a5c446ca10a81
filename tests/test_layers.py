"""Imports point one way: cli -> api -> (sweep, report) -> engine -> kernels, with analysis (pure
pandas) below report and sweep and above nothing but the base modules; trace depends on
neither engine nor kernels; nothing imports the CLI; workloads use the trace format (and the
base modules) only; the CLI imports workloads' torch-free recipe schema (``run_config``) to type
``accelsim record``'s options, and the rest of workloads lazily.

Every import is checked, module-level and inside functions alike, by reading the source (ast),
so a lazy import cannot slip a dependency past the rule. A second test checks what importing
the light modules and ``accelsim --help`` load: no torch, no numba, no compiled kernel.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Each module's layer; a module may import its own layer and the layers listed for it.
LAYERS: dict[str, str] = {
    "accelsim": "base", "accelsim.config": "base", "accelsim.network": "base",
    "accelsim.errors": "base", "accelsim.fileio": "base", "accelsim.schema": "base",
    "accelsim.inputs": "base", "accelsim.units": "base", "accelsim.store": "base",
    "accelsim.trace": "trace",
    "accelsim.kernels": "kernels",
    "accelsim.engine": "engine", "accelsim.sparsity": "engine",
    "accelsim.analysis": "analysis",
    "accelsim.plots": "report", "accelsim.plot_style": "report", "accelsim.sweep_plots": "report",
    "accelsim.report": "report", "accelsim.report_page": "report",
    "accelsim.report_text": "report", "accelsim.report_inputs": "report",
    "accelsim.report_schemes": "report", "accelsim.sweep": "sweep",
    "accelsim.api": "api",
    "accelsim.cli": "cli",
    "workloads": "workloads",
}
ALLOWED: dict[str, set[str]] = {
    "base": {"base"},
    "trace": {"trace", "base"},
    "kernels": {"kernels"},
    "engine": {"engine", "kernels", "trace", "base"},
    "analysis": {"analysis", "base"},
    "report": {"report", "analysis", "base"},
    "sweep": {"sweep", "analysis", "engine", "trace", "base"},
    "api": {"api", "report", "sweep", "analysis", "engine", "trace", "base"},
    "cli": {"cli", "api", "report", "sweep", "analysis", "engine", "trace", "base", "workloads"},
    "workloads": {"workloads", "trace", "base"},
}


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name (longest matching prefix; cli_* modules are cli)."""
    if module.startswith("accelsim.cli"):
        return "cli"
    best = None
    for prefix, layer in LAYERS.items():
        if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > len(best[0])):
            best = (prefix, layer)
    return best[1] if best else None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, source: str) -> list[tuple[int, str]]:
    """(line, module) of every accelsim / workloads import in the file of module ``source``."""
    found = []
    package = source if path.name == "__init__.py" else source.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            name = node.module or ""
            if node.level:  # relative import
                parts = package.split(".")
                name = ".".join(parts[:len(parts) - node.level + 1] + ([name] if name else []))
            found.append((node.lineno, name))
            # `from accelsim import kernels` imports a module too: check each name as one
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if layer_of(name) is not None]


def violations(path: Path, source: str) -> list[str]:
    """Imports of module ``source`` (in ``path``) that its layer may not make."""
    layer = layer_of(source)
    assert layer is not None, f"{source} has no layer in tests/test_layers.py"
    found: dict[int, str] = {}  # one problem a line
    for line, target in imported_modules(path, source):
        if layer_of(target) not in ALLOWED[layer] and line not in found:
            found[line] = (f"{path}:{line}: {layer} module {source} imports {target} "
                           f"({layer_of(target)})")
    return list(found.values())


def test_imports_point_one_way() -> None:
    files = sorted((ROOT / "accelsim").rglob("*.py")) + sorted((ROOT / "workloads").rglob("*.py"))
    assert len(files) > 20
    problems = [problem for path in files for problem in violations(path, module_name(path))]
    assert not problems, "\n".join(problems)


def test_the_rule_can_fail(tmp_path: Path) -> None:
    """A lazy import from the trace layer into the engine, or from anywhere into the CLI, is
    found."""
    bad = tmp_path / "format.py"
    bad.write_text("def f():\n    from accelsim.engine.sparse import LayerMasks\n"
                   "    from ..kernels import as_words\n")
    assert len(violations(bad, "accelsim.trace.format")) == 2
    bad.write_text("import accelsim.cli_trace\n")
    assert violations(bad, "accelsim.api")
    assert not violations(bad, "accelsim.cli")
    bad.write_text("from accelsim import kernels\nfrom .. import engine\n"
                   "from accelsim import cli\n")
    assert len(violations(bad, "accelsim.trace.format")) == 3


def test_light_imports_load_no_torch_and_no_numba() -> None:
    """`import accelsim`, the trace format, configs, reports, sweeps and `accelsim --help` load
    neither torch nor numba: a recorder or a report never pays for the kernels."""
    code = (
        "import sys\n"
        "import accelsim, accelsim.cli, accelsim.config, accelsim.network, accelsim.trace\n"
        "import accelsim.trace.synth, accelsim.report, accelsim.sweep\n"
        "from click.testing import CliRunner\n"
        "CliRunner().invoke(accelsim.cli.main, ['--help'])\n"
        "heavy = ('torch', 'numba', 'accelsim.kernels')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy)\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
