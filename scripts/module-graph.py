#!/usr/bin/env python3
"""The crate's module dependency graph, from `use crate::…` and `crate::…`
paths in src/ (tests excluded), and its import cycles.

    scripts/module-graph.py            # edges and cycles, as text
    scripts/module-graph.py --dot      # Graphviz

A module is a file under src/ (`src/dpop/proof.rs` is `dpop::proof`; a
`mod.rs` is its folder). An edge A -> B means A's non-test code names
something in B (`crate::`, `super::` and `self::` paths alike; comments are
ignored). A module naming its own folder (`super::` from a child) is not
counted. Exits 1 if there is a cycle.
"""
import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def module_of(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return "::".join(parts) or "crate"


def non_test_source(text: str) -> str:
    """The file's code, without comments and without its `#[cfg(test)]`
    modules (a test may use anything)."""
    text = re.sub(r"//[^\n]*", "", text)
    kept, depth, skipping = [], 0, False
    lines = iter(text.splitlines())
    for line in lines:
        if re.match(r"\s*#\[cfg\(test\)\]", line):
            skipping, depth = True, 0
            continue
        if skipping:
            depth += line.count("{") - line.count("}")
            if depth <= 0 and ("}" in line or ";" in line):
                skipping = False
            continue
        kept.append(line)
    return "\n".join(kept)


def absolute_paths(text: str, module: str) -> list[str]:
    """Every path the code names from the crate root: `crate::a::b`, and
    `super::b` / `self::b` resolved against `module`."""
    parent = module.split("::")[:-1] if module != "crate" else []
    own = module.split("::") if module != "crate" else []
    names = []
    for prefix, base in (("crate", []), ("super", parent), ("self", own)):
        for group in re.findall(prefix + r"::\{([^}]*)\}", text):
            names += ["::".join(base + [g.strip()]) for g in group.split(",")]
        for path in re.findall(r"\b" + prefix + r"::([A-Za-z_][\w:]*)", text):
            names.append("::".join(base + [path]))
    return names


def targets(text: str, module: str, modules: set[str]) -> set[str]:
    found = set()
    for name in absolute_paths(text, module):
        segments = [s for s in name.split("::") if s]
        # The longest prefix that is a module.
        for end in range(len(segments), 0, -1):
            candidate = "::".join(segments[:end])
            if candidate in modules:
                found.add(candidate)
                break
    return found


def main() -> int:
    files = [p for p in SRC.rglob("*.rs") if "bin" not in p.relative_to(SRC).parts]
    modules = {module_of(p) for p in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        source = module_of(path)
        text = non_test_source(path.read_text())
        graph[source] = {
            t
            for t in targets(text, source, modules)
            # A module naming its own folder's front door (or itself) is not a dependency.
            if t != source and not source.startswith(t + "::")
        }
    if "--dot" in sys.argv:
        print("digraph modules {")
        for source in sorted(graph):
            for target in sorted(graph[source]):
                print(f'  "{source}" -> "{target}";')
        print("}")
    else:
        for source in sorted(graph):
            print(f"{source} -> {', '.join(sorted(graph[source])) or '-'}")
    cycles = find_cycles(graph)
    print(f"\n{len(cycles)} group(s) of modules that import each other in a cycle")
    for members, cycle in cycles:
        print(f"  {len(members)} modules: {', '.join(sorted(members))}")
        print("    for example " + " -> ".join(cycle + [cycle[0]]))
    return 1 if cycles else 0


def find_cycles(graph: dict[str, set[str]]) -> list[tuple[list[str], list[str]]]:
    """Strongly connected components with more than one module, each with
    one cycle through it (Tarjan, then a shortest path inside the component)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(component)

    sys.setrecursionlimit(10000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for component in components:
        members = set(component)
        start = min(component)
        # Shortest cycle back to start within the component (BFS).
        paths = {start: [start]}
        queue = [start]
        cycle = None
        while queue and cycle is None:
            node = queue.pop(0)
            for nxt in sorted(graph[node]):
                if nxt == start:
                    cycle = paths[node]
                    break
                if nxt in members and nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    queue.append(nxt)
        cycles.append((component, cycle or sorted(component)))
    return cycles


if __name__ == "__main__":
    sys.exit(main())
