#!/usr/bin/env python3
"""The structure of the package in numbers (docs/design.md quotes them): modules and
their lines, the longest functions, and the import graph - arrows between modules,
import circles, and floors (the longest chain of imports from a module down to one that
imports nothing of the package; a module's floor is 1 + the highest floor it imports),
also with the modules folded into their subpackages.

    python tools/structure.py [--root DIR] [--package xmmext] [--top 10] [--json]

Imports inside functions count as arrows too (a deferred import is still a dependency).
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(tree: ast.AST, name: str, is_pkg: bool, package: str) -> set[str]:
    """Modules of ``package`` that a module imports (absolute or relative)."""
    found = set()
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == package}
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                mod = ".".join(base[: len(base) - node.level + 1] + ([mod] if mod else []))
            if mod.split(".")[0] != package:
                continue
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names}
    return found


def analyse(root: Path, package: str) -> dict:
    files = sorted((root / package).rglob("*.py"))
    mods, funcs, raw = {}, [], {}
    for f in files:
        text = f.read_text()
        tree = ast.parse(text)
        name = module_name(f, root)
        mods[name] = text.count("\n")
        raw[name] = imports_of(tree, name, f.name == "__init__.py", package)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                funcs.append((node.end_lineno - node.lineno + 1, f"{name}.{node.name}"))
    # an arrow goes to a module of the package (a name imported from a package's __init__
    # that is not a module points at the package)
    graph = {m: {t for t in targets if t in mods and t != m and not m.startswith(t + ".")} for m, targets in raw.items()}
    floors, circles = _floors(graph)
    # the same graph with every module folded into its subpackage (xmmext.<sub>): the rooms
    # of a picture of the package
    room = {m: ".".join(m.split(".")[:2]) for m in graph}
    rooms = {r: set() for r in room.values()}
    for m, targets in graph.items():
        rooms[room[m]] |= {room[t] for t in targets if room[t] != room[m]}
    room_floors, room_circles = _floors(rooms)
    return {"modules": len(mods), "lines": sum(mods.values()),
            "rooms": len(rooms), "room_arrows": sum(len(v) for v in rooms.values()),
            "room_floors": max(room_floors.values(), default=0), "room_circles": room_circles,
            "over_400_lines": sorted(((n, m) for m, n in mods.items() if n > 400), reverse=True),
            "functions_over_80_lines": sorted((f for f in funcs if f[0] > 80), reverse=True),
            "longest_functions": sorted(funcs, reverse=True),
            "largest_modules": sorted(((n, m) for m, n in mods.items()), reverse=True),
            "arrows": sum(len(v) for v in graph.values()), "floors": max(floors.values(), default=0),
            "circles": circles}


def _floors(graph: dict) -> tuple[dict, list]:
    """Floor of every module; the import circles found (strongly connected components)."""
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):                      # Tarjan's algorithm
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            comps.append(comp)
    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    circles = [sorted(c) for c in comps if len(c) > 1]
    comp_of = {m: i for i, c in enumerate(comps) for m in c}
    floor: dict[int, int] = {}
    for i, comp in enumerate(comps):          # Tarjan gives components in reverse topological order
        below = [floor[comp_of[w]] for v in comp for w in graph[v] if comp_of[w] != i]
        floor[i] = 1 + max(below, default=0)
    return {m: floor[comp_of[m]] for m in graph}, circles


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=str(Path(__file__).resolve().parents[1]))
    p.add_argument("--package", default="xmmext")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    res = analyse(Path(args.root), args.package)
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    print(f"{res['modules']} modules, {res['lines']} lines; {res['arrows']} import arrows, {res['floors']} floors, "
          f"{len(res['circles'])} circles")
    print(f"folded into subpackages: {res['rooms']} rooms, {res['room_arrows']} arrows, {res['room_floors']} floors, "
          f"{len(res['room_circles'])} circles")
    print(f"modules over 400 lines: {len(res['over_400_lines'])}; functions over 80 lines: "
          f"{len(res['functions_over_80_lines'])}")
    print("longest functions:")
    for n, f in res["longest_functions"][: args.top]:
        print(f"  {n:4d}  {f}")
    print("largest modules:")
    for n, m in res["largest_modules"][: args.top]:
        print(f"  {n:4d}  {m}")
    for c in res["circles"]:
        print("circle: " + " <-> ".join(c))
    return 0


if __name__ == "__main__":
    sys.exit(main())
