"""The package's shape: no import circles, no private names imported across modules, no overlong functions.

The checks are tools/import_graph.py's (``make lint`` runs it too); each is also shown failing on a small
package written here, so that a check which cannot fail would be caught."""

import ast
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "vicreg"
MAX_FUNCTION_LINES = 80  # longer only with a "# long: <reason>" comment at its top


def _tool():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "vicreg"
    for name, text in {"__init__.py": "", **files}.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    return pkg


def test_the_package_has_no_import_circles_and_no_private_imports():
    tool = _tool()
    edges, lines, private = tool.graph(PACKAGE)
    assert tool.circles(edges) == []
    assert private == []
    assert "vicreg.rundir" in edges and "vicreg.data.video" in edges  # the map saw the subpackages
    assert "vicreg.config" in edges["vicreg.models"] and "vicreg.models" not in edges["vicreg.config"]


def test_a_circle_and_a_private_import_are_found(tmp_path):
    tool = _tool()
    pkg = _write_package(tmp_path, {
        "a.py": "from .b import thing\n",
        "b.py": "def thing():\n    from .a import _helper\n",
        "sub/__init__.py": "",
        "sub/c.py": ("from ..a import thing\nfrom typing import TYPE_CHECKING\n"
                     "if TYPE_CHECKING:\n    from ..d import X\n"),
        "d.py": "from .sub.c import thing\n",
    })
    edges, _, private = tool.graph(pkg)
    assert tool.circles(edges) == [["vicreg.a", "vicreg.b"]]  # d -> sub.c is one way: under TYPE_CHECKING
    assert private == ["vicreg.b imports _helper from vicreg.a"]
    assert "vicreg.sub" in edges["vicreg.d"]  # importing vicreg.sub.c runs vicreg/sub/__init__ first
    assert tool.main(["--src", str(pkg), "--quiet"]) == 1
    assert tool.main(["--src", str(PACKAGE), "--quiet"]) == 0


def _long_functions(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        source = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(source))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                head = "\n".join(source[node.lineno - 1:node.lineno + 3])
                if length > MAX_FUNCTION_LINES and "# long:" not in head:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_is_longer_than_80_lines_without_a_reason(tmp_path):
    assert _long_functions(PACKAGE) == []
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    reasoned = f"def g():\n    # long: a table of {MAX_FUNCTION_LINES} rows\n{body}\n"
    pkg = _write_package(tmp_path, {"long.py": f"def f():\n{body}\n", "reasoned.py": reasoned})
    assert _long_functions(pkg) == [f"long.py:1 f ({MAX_FUNCTION_LINES + 1} lines)"]


MAX_MODULE_LINES = 400  # a module a reader can hold in mind; split by job beyond that


def _long_modules(root: Path) -> list[str]:
    return [f"{p.relative_to(root)} ({n} lines)" for p in sorted(root.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]


def test_no_module_is_longer_than_400_lines(tmp_path):
    assert _long_modules(PACKAGE) == []
    pkg = _write_package(tmp_path, {"big.py": "x = 1\n" * (MAX_MODULE_LINES + 1), "ok.py": "x = 1\n" * 400})
    assert _long_modules(pkg) == [f"big.py ({MAX_MODULE_LINES + 1} lines)"]


def _call_walk_tool():
    spec = importlib.util.spec_from_file_location("call_walk", ROOT / "tools" / "call_walk.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_the_walk_counts_rooms_and_the_calls_that_come_back_to_a_room_left(tmp_path, monkeypatch):
    pkg = tmp_path / "walkpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text(
        "from . import b\n"
        "def entry():\n    b.build()\n    b.untraced()\n    b.again()\n"
        "def helper():\n    return 1\n")
    (pkg / "b.py").write_text(
        "from . import c\n"
        "def build():\n    c.f()\n    c.f()\n"  # c left, then entered by a new call: one return
        "def untraced():\n    c.f()\n"
        "def again():\n    return 2\n")
    (pkg / "c.py").write_text("def f():\n    from . import a\n    return a.helper()\n")  # a is on the stack
    monkeypatch.syspath_prepend(str(tmp_path))
    a = importlib.import_module("walkpkg.a")
    rooms, reentries = _call_walk_tool().walk("walkpkg.a", "entry", {"build", "again"}, a.entry, package="walkpkg")
    assert rooms == ["walkpkg.a", "walkpkg.b", "walkpkg.c", "walkpkg.a", "walkpkg.c", "walkpkg.b", "walkpkg.c",
                     "walkpkg.a", "walkpkg.c", "walkpkg.b", "walkpkg.a", "walkpkg.b", "walkpkg.a"]
    assert reentries == 2  # b.build's second call of c, and a.entry's call of b.again after b was left


def test_set_up_builds_the_step_in_one_call_that_never_comes_back_to_a_room_it_left(capsys):
    assert _call_walk_tool().main([]) == 0
    walk, summary = capsys.readouterr().out.splitlines()
    assert walk.startswith("training.setup -> step") and walk.endswith("-> training.setup")
    assert summary.endswith(", 0 returns to a room already left")
