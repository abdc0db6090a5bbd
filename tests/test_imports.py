"""The shape of ``lib``: no import circle among its modules, and no module importing another's
private names. Read from the source with ``ast``, so it needs no import of ``lib`` at all.

Every ``import`` counts, also one inside a function (moving an import into a function hides
a circle from Python, not from a reader); only ``if TYPE_CHECKING:`` blocks are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "lib"


def _module_name(path: Path) -> str:
    parts = path.relative_to(LIB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(LIB.rglob("*.py"))}


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(name: str) -> dict[str, list[str]]:
    """``{lib module imported: [names taken from it]}`` for module ``name``."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: dict[str, list[str]] = {}
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    out.setdefault(alias.name, [])
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in MODULES:  # `from lib import pretrained`: the module itself
                    out.setdefault(sub, [])
                elif base in MODULES:
                    out.setdefault(base, []).append(alias.name)
    out.pop(name, None)
    return out


GRAPH = {name: imports_of(name) for name in MODULES}


def test_the_graph_sees_the_imports_it_should():
    assert "lib.color" in GRAPH["lib.data"], "the parser missed `from lib.color import ...`"
    assert len(MODULES) > 10 and all(m.startswith("lib") for m in MODULES)


def test_no_import_circle_in_lib():
    circles, state = [], {}

    def visit(name, path):
        state[name] = "open"
        for dep in GRAPH[name]:
            if state.get(dep) == "open":
                circles.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[name] = "done"

    for name in GRAPH:
        if name not in state:
            visit(name, [name])
    assert not circles, "import circles in lib/:\n  " + "\n  ".join(circles)


def test_no_module_imports_another_modules_private_names():
    private = [f"{name} imports {dep}.{n}" for name, deps in GRAPH.items() for dep, names in deps.items()
               for n in names if n.startswith("_") and not n.startswith("__")]
    assert not private, "private names used across modules (make them public or move them):\n  " + "\n  ".join(private)
