"""The code's shape: small modules and functions, no import circle, built-in targets shipped in the package."""

import ast
from pathlib import Path

import harness

PACKAGE = Path(harness.__file__).parent
REPO = PACKAGE.parent
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every harness module `name` imports, at the top or inside a function (a lazy import still binds)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def test_no_module_is_longer_than_the_limit():
    long = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert {n: lines for n, lines in long.items() if lines > MAX_MODULE_LINES} == {}


def test_no_function_is_longer_than_the_limit():
    long = {}
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{name}.{node.name}"] = lines
    assert long == {}


def test_no_import_circle_between_harness_modules():
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    # A package's __init__ that re-exports its submodules is the package, not a step: its submodules
    # importing each other through it is not a circle.
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    assert _cycles(graph) == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle a depth-first walk of `graph` meets, each as the path round it."""
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_every_command_has_its_own_module():
    from harness.cli import COMMANDS, build_parser

    parser = build_parser()
    names = set(parser._subparsers._group_actions[0].choices)
    assert names == {module.__name__.rpartition(".")[2] for module in COMMANDS}


def test_builtin_targets_ship_in_the_package_and_match_the_repository_copy():
    shipped = {p.name: p.read_text() for p in (PACKAGE / "assets" / "targets").glob("*.toml")}
    assert {"watch.toml", "phone.toml", "cloud.toml"} <= set(shipped)
    repo_copy = REPO / "targets"
    if repo_copy.is_dir():  # a source checkout: the user-facing copy must not drift from what ships
        assert {p.name: p.read_text() for p in repo_copy.glob("*.toml")} == shipped


def test_a_built_wheel_holds_the_targets_and_every_module(tmp_path):
    """A regular (non-editable) install gets what it needs: the profiles are package data, not repository files."""
    import subprocess
    import sys
    import zipfile

    if not (REPO / "pyproject.toml").is_file():
        return  # an installed copy, not a checkout: nothing to build
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    names = set(zipfile.ZipFile(next(tmp_path.glob("harness-*.whl"))).namelist())
    assert {f"harness/assets/targets/{t}.toml" for t in ("watch", "phone", "cloud")} <= names
    modules = {str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py")}
    assert modules <= names


def test_the_top_of_the_package_holds_only_shared_modules_and_the_stages_are_folders():
    top = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(top) <= 12, top
    stages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert {"models", "tasks", "export", "variants", "bench", "measure", "runners", "serve", "gate", "report",
            "reduce", "cli"} <= stages


def test_no_import_circle_between_packages():
    """Stages import downstream only: a circle between two folders (models and reduce, backends and measure) means a
    step lives in the wrong one, even when no two modules import each other."""
    modules = _modules()

    def stage(name: str) -> str:
        return ".".join(name.split(".")[:2])

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph.setdefault(stage(name), set()).update(
            stage(t) for t in _imports(name, path, set(modules)) if stage(t) not in (stage(name), "harness"))
    assert _cycles(graph) == []


def test_the_child_package_imports_nothing_of_the_harness_outside_itself():
    """harness/measure/ is what ships to an ssh device, a Ray node or a side runtime: an import of any other harness
    module from it would fail there (only harness/__init__.py travels with it)."""
    modules = _modules()
    outside = {f"{name} -> {target}" for name, path in modules.items() if name.startswith("harness.measure")
               for target in _imports(name, path, set(modules))
               if not target.startswith("harness.measure") and target != "harness"}
    assert outside == set()


def test_the_shipped_files_are_the_child_package_whole():
    from harness.runners import child_package_files

    shipped = set(child_package_files())
    assert {str(p.relative_to(PACKAGE)) for p in (PACKAGE / "measure").rglob("*.py")} | {"__init__.py"} == shipped


def test_no_backend_is_named_outside_the_backends_package():
    """A backend is a plugin: what it is called, reads and needs lives in harness/measure/backends (the rest asks it)."""
    named = []
    for name, path in _modules().items():
        if name.startswith("harness.measure.backends"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value == "onnxruntime":
                named.append(f"{name}:{node.lineno}")
    assert named == []


def test_the_layout_page_names_every_module_there_is_and_none_that_is_not():
    """docs/layout.md is where a newcomer finds a backend, a figure, a runner or a gate rule: it must not drift."""
    import re

    page = (REPO / "docs" / "layout.md").read_text()
    named = lambda text: {m for m in re.findall(r"`([\w/]+\.py)`", text) if not m.startswith("__")}  # noqa: E731
    top = page[page.index("## Directly under"):page.index("## The stages")]
    assert named(top) == {p.name for p in PACKAGE.glob("*.py") if not p.name.startswith("__")}
    for folder in sorted(p.parent for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE):
        name = folder.relative_to(PACKAGE).as_posix()
        row = next((line for line in page.splitlines() if line.startswith(f"| `{name}/` |")), None)
        assert row is not None, f"docs/layout.md has no row for {name}/"
        modules = {p.name for p in folder.glob("*.py") if not p.name.startswith("__")}
        assert {n for n in named(row) if "/" not in n} == modules, name
