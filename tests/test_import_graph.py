"""The model library is a leaf of `pipelines`, and no module of the product imports itself through others (not even
through an import inside a function, which hides a cycle from the first reader)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
PACKAGES = ("pipelines", "studio")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The product modules `path` imports anywhere in its body (`from a.b import c` counts a.b, and a.b.c when that
    is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)  # `from a.b import c` runs a.b (its __init__ when it is a package) first
            found |= {f"{node.module}.{alias.name}" for alias in node.names} & known
    return {name for name in found if name in known}


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    return {name: imports_of(path, set(files)) - {name} for name, path in files.items()}


def cycle_in(edges: dict[str, set[str]]) -> list[str]:
    """One import cycle (a → b → … → a), or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str]:
        state[name] = 1
        path.append(name)
        for target in sorted(edges[name]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        state[name] = 2
        path.pop()
        return []

    for name in sorted(edges):
        if name not in state and (found := visit(name)):
            return found
    return []


def test_no_module_imports_itself_through_others() -> None:
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]  # the finder finds
    assert cycle_in(graph()) == []


def test_the_model_library_imports_no_other_pipelines_module() -> None:
    edges = graph()
    inside = {name for name in edges if name.startswith("pipelines.models")}
    assert inside and all(target in inside for name in inside for target in edges[name]), {
        name: sorted(edges[name] - inside) for name in inside if edges[name] - inside}
    # and at run time: importing the package (all of it) loads no other module of pipelines, nor studio
    loaded = subprocess.run(
        [sys.executable, "-c", "import json, sys, pipelines.models, pipelines.models.hub, pipelines.models.hashes;"
         "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('pipelines', 'studio'))))"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert [m for m in json.loads(loaded) if not m.startswith("pipelines.models") and m != "pipelines"] == []
