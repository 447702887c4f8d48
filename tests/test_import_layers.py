"""The layers hold: no import cycle among rlkit's modules (function-level imports count; `if TYPE_CHECKING:`
ones do not), and rlkit/algos/ (pure tensor functions) imports nothing of rlkit outside itself."""

import ast
from pathlib import Path

RLKIT = Path(__file__).resolve().parents[1] / "rlkit"


def import_graph() -> dict[str, set[str]]:
    modules = {}
    for path in RLKIT.rglob("*.py"):
        name = ".".join(path.relative_to(RLKIT.parent).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        typing_only = {id(sub) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                       for sub in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rlkit"):
                submodules = [f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in modules]
                # `from pkg import submodule` loads the submodule (pkg is already being imported); else pkg itself
                targets = submodules if len(submodules) == len(node.names) else [node.module, *submodules]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_no_import_cycles():
    graph = import_graph()
    assert "rlkit.eval.benchmarks" in graph["rlkit.config"]  # the walk sees function-level imports
    assert find_cycle(graph) is None


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_algos_import_only_algos():
    graph = import_graph()
    outside = {m: sorted(t for t in targets if not t.startswith("rlkit.algos")) for m, targets in graph.items() if m.startswith("rlkit.algos")}
    assert {m: t for m, t in outside.items() if t} == {}
