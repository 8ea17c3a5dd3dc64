"""The shape of the code: functions under 60 lines, modules under 600, no import cycles (not even ones held
together by imports inside functions), nothing importing upward, and every module importable on its own."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("rlvr", "rollout", "verifiers")
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 600
# what each layer may import from the project (the model at the bottom; verifiers stand alone)
ALLOWED = {
    "rlvr.model": ("rlvr.model",),
    "rlvr.seeds": (),
    "rlvr.threads": (),
    "verifiers": ("verifiers",),
    "rollout": ("rollout", "rlvr.model", "rlvr.seeds", "rlvr.threads"),
}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def project_imports(name: str, path: Path) -> set[str]:
    """Project modules `name` imports anywhere (functions included), except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    skip = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in ast.walk(node)
    }
    known = modules()
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in known and t != name}
    return out


def test_no_function_over_60_lines_and_no_module_over_600() -> None:
    long_functions, big_modules = [], []
    for name, path in modules().items():
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            big_modules.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}.{node.name} (line {node.lineno}): {length} lines")
    assert not big_modules, big_modules
    assert not long_functions, long_functions


def test_no_import_cycles_and_nothing_imports_upward() -> None:
    graph = {name: project_imports(name, path) for name, path in modules().items()}
    upward = [
        f"{name} imports {target}"
        for name, targets in graph.items()
        for layer, allowed in ALLOWED.items()
        if name == layer or name.startswith(layer + ".")
        for target in targets
        if not any(target == a or target.startswith(a + ".") for a in allowed)
    ]
    assert not upward, upward
    cycles = []

    def visit(node: str, path: list[str], done: set[str]) -> None:
        for target in sorted(graph[node]):
            if target in path:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in done:
                visit(target, [*path, target], done)
        done.add(node)

    done: set[str] = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [name], done)
    assert not cycles, cycles


def test_every_module_imports_on_its_own() -> None:
    """Each module imported into an interpreter holding none of the project's modules (so its import order
    cannot lean on another module having been imported first)."""
    names = [n for n in modules() if not n.endswith("__main__")]
    script = (
        "import importlib, sys\n"
        f"PROJECT = {PACKAGES!r}\n"
        f"for name in {names!r}:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] in PROJECT]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_ruff_is_clean_with_the_complexity_rule() -> None:
    ruff = Path(sys.executable).with_name("ruff")
    for args in (["check", "."], ["format", "--check", "."]):
        done = subprocess.run([str(ruff), *args], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
