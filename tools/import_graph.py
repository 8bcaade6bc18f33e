"""The package's module map: each module's lines and the vicreg modules it imports; fails on an import circle.

    python tools/import_graph.py                 # the map of src/vicreg, then "no import circles"
    python tools/import_graph.py --src DIR       # another checkout's package folder (e.g. an older commit's)

Every import counts, module-level or inside a function, except those under ``if TYPE_CHECKING:``. A module
importing ``vicreg.x`` also depends on the package ``vicreg.x`` (its ``__init__``). Exit status 1 when there is
a circle (each one is printed), or when a module imports a private (underscore) name of another module.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = "vicreg"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of ``from <level dots><target> import ...`` written in ``module``."""
    if level == 0:
        return target or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _under_type_checking(node: ast.AST, parents: dict) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(path: Path, module: str, modules: set[str]) -> tuple[set[str], list[str]]:
    """(vicreg modules imported by ``module``, private names it imports from other modules)."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found, private = set(), []
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node.level, node.module)
            names = []
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                names.append(sub if sub in modules else target)
                if alias.name.startswith("_") and not alias.name.startswith("__") and target in modules:
                    private.append(f"{module} imports {alias.name} from {target}")
        else:
            continue
        if _under_type_checking(node, parents):
            continue
        for name in names:
            while name and name not in modules:  # vicreg.data.video.X -> vicreg.data.video
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found, private


def graph(src: Path) -> tuple[dict[str, set[str]], dict[str, int], list[str]]:
    files = {module_name(p, src): p for p in sorted(src.rglob("*.py"))}
    modules = set(files)
    edges, lines, private = {}, {}, []
    for name, path in files.items():
        edges[name], bad = imports_of(path, name, modules)
        private += bad
        lines[name] = len(path.read_text().splitlines())
    for name in modules:  # importing a.b.c runs a/__init__ and a/b/__init__ first
        for dep in list(edges[name]):
            parent = dep.rpartition(".")[0]
            while parent and parent != PACKAGE:
                if parent != name and not name.startswith(parent + "."):
                    edges[name].add(parent)
                parent = parent.rpartition(".")[0]
    return edges, lines, private


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
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
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def _short(module: str) -> str:
    return module.removeprefix(PACKAGE + ".") or PACKAGE


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src" / PACKAGE)
    ap.add_argument("--quiet", action="store_true", help="only the verdict")
    args = ap.parse_args(argv)
    edges, lines, private = graph(args.src)
    if not args.quiet:
        width = max(len(_short(m)) for m in edges)
        print(f"{len(edges)} modules, {sum(lines.values())} lines")
        for m in sorted(edges):
            deps = ", ".join(sorted(_short(d) for d in edges[m])) or "-"
            print(f"  {_short(m):<{width}} {lines[m]:5d}  <- imports {deps}")
    found = circles(edges)
    for comp in found:
        print("import circle: " + " <-> ".join(comp))
    for p in private:
        print("private import: " + p)
    if not found and not private:
        print("no import circles; no private names imported across modules")
    return 1 if found or private else 0


if __name__ == "__main__":
    sys.exit(main())
