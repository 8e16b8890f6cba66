"""The package's layers, checked from the source (every import, at module level or inside a function):

    base (errors, outputs, sizes, malloc, native, datasets, images)
    graph  <- ops <- models <- export          the torch side writes exported files
    ops <- compat <- export                    stand-ins for other projects' kernel modules
    graph  <- runtime <- calib                 the deployment side reads them, without PyTorch
    app, doctor, evaluate, bench, train, cli   the application layer, above both; nothing imports cli

export may import runtime: the PyTorch backend registers itself with the runtime's backend registry.
"""
import ast
import subprocess
import sys
from pathlib import Path

import avssm

PACKAGE = Path(avssm.__file__).resolve().parent
BASE = {"errors", "outputs", "sizes", "malloc", "native", "datasets", "images"}
ALLOWED = {
    "graph": {"graph"},
    "ops": {"graph", "ops"},
    "models": {"graph", "ops", "models"},
    "compat": {"graph", "ops", "compat"},
    "export": {"graph", "ops", "models", "compat", "export", "runtime"},
    "runtime": {"graph", "runtime"},
    "calib": {"graph", "runtime", "calib"},
    **{name: BASE for name in BASE},
}
APPLICATION = {"app", "doctor", "evaluate", "bench", "train", "cli", "__init__"}


def _layer(module: str) -> str:
    """'avssm.runtime.backends' -> 'runtime'; 'avssm.native' -> 'native'; 'avssm' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def avssm_imports(path: Path) -> set[str]:
    """Every avssm module a source file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "avssm")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "avssm":
            if node.module == "avssm":  # from avssm import native
                found.update(f"avssm.{a.name}" for a in node.names)
            else:
                found.add(node.module)
    return found


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        yield ".".join(p for p in rel.parts if p != "__init__"), path


def test_every_module_has_a_layer():
    for name, _ in modules():
        layer = _layer(name)
        assert layer in ALLOWED or layer in APPLICATION, f"{name}: not in any layer; add it to tests/test_layering.py"


def test_layers_import_only_what_is_below_them():
    wrong = []
    for name, path in modules():
        layer = _layer(name)
        if layer in APPLICATION:
            continue
        allowed = ALLOWED[layer] | BASE | {"__init__"}
        wrong += [f"{name} imports {imported}" for imported in sorted(avssm_imports(path))
                  if _layer(imported) not in allowed]
    assert wrong == []


def test_nothing_imports_the_cli():
    wrong = [f"{name} imports avssm.cli" for name, path in modules()
             if name != "avssm.cli" and any(i.startswith("avssm.cli") for i in avssm_imports(path))]
    assert wrong == []


def _import_all(packages, blocked, then: str = "") -> subprocess.CompletedProcess:
    names = [name for name, _ in modules() if _layer(name) in packages]
    code = (f"import sys\nfor m in {sorted(blocked)!r}: sys.modules[m] = None\n"
            + "".join(f"import {name}\n" for name in names) + then)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_deployment_side_imports_and_works_without_torch():
    # A Jetson that only runs engines has no PyTorch: every deployment module imports, and frames flow.
    r = _import_all({"graph", "runtime", "calib", "datasets", "errors", "outputs", "sizes", "malloc", "native", "images"},
                    {"torch"}, then=("f, _ = avssm.datasets.roads.render_scene(0, 64, 96)\n"
                                     "assert avssm.runtime.preprocess.preprocess(f).shape == (1, 3, 64, 96)\n"))
    assert r.returncode == 0, r.stderr


def test_graph_needs_only_onnx_and_numpy():
    r = _import_all({"graph"}, {"torch", "cv2", "onnxruntime"})
    assert r.returncode == 0, r.stderr


def test_the_cli_runs_exported_files_without_torch_loaded():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import avssm.cli, avssm.app, avssm.evaluate, avssm.doctor\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


def test_the_walk_finds_the_modules():
    assert {"avssm.graph.lowering", "avssm.runtime.backends", "avssm.export.torch_backend"} <= {n for n, _ in modules()}
    assert "avssm.runtime.backends" in avssm_imports(PACKAGE / "calib" / "frames.py")


def test_lazy_packages_export_no_name_of_their_own_submodules():
    # A package that loads its names on first use must not export a name that is also one of its modules:
    # once the module is imported it becomes the package's attribute, and `from avssm.calib import calibrate`
    # would give the module instead of the function.
    import importlib

    for package in ("avssm.runtime", "avssm.export", "avssm.calib"):
        exports = set(importlib.import_module(package)._EXPORTS)
        modules = {p.stem for p in (PACKAGE / package.split(".")[1]).glob("*.py")}
        assert exports.isdisjoint(modules), (package, exports & modules)


def _imported_modules(path: Path, names: set[str]) -> set[str]:
    """The avssm modules a file imports, `from avssm.ops import cpu_kernel` read as avssm.ops.cpu_kernel."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in names else node.module
                         for a in node.names)
    return found & names


def test_the_ops_modules_import_one_another_without_a_circle():
    # selective_scan routes exports to selective_scan_onnx, which must not reach back into the operations that
    # route to it (each passes the function that computes the node's value).
    ops = {name: path for name, path in modules() if _layer(name) == "ops" and name != "avssm.ops"}
    edges = {name: _imported_modules(path, set(ops)) - {name} for name, path in ops.items()}

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, (*seen, n))) for n in edges[start])

    assert sorted(n for n in ops if reaches(n, n)) == []
