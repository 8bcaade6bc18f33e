"""The walk of the code that builds the training step: which vicreg modules a reader passes through, in order.

    python tools/call_walk.py                                   # this checkout, the demo preset
    python tools/call_walk.py --src OLD/src --entry vicreg.train:set_up \\
        --calls _step_config compiles_update build_optimizer _data_parallel Step   # an older layout

It runs the set-up of a tiny demo run under ``sys.setprofile`` and follows the calls that ``--entry`` makes to the
functions named by ``--calls`` (the ones that build the step), into every vicreg function beneath them and back.
Each change of module is one step of the walk (a "room"). A room entered again by a new call after the walk had
left it altogether (it was no longer on the stack) is a *return to a room already left*: the decisions about the
step are then spread over two places. Coming back to a caller when a callee returns is not counted. Printed: the
walk, the rooms entered and the returns (the figures of a closing note on the layout).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def walk(entry_module: str, entry_name: str, calls: set[str], run, package: str = "vicreg") -> tuple[list[str], int]:
    """Modules passed through, in order, by the calls named ``calls`` that ``entry_name`` makes while ``run()``,
    and how many calls entered a module that the walk had left altogether."""
    rooms: list[str] = []
    reentries = [0]
    stack: list[str | None] = []  # the vicreg module of every Python frame on the stack (None: not vicreg)
    inside = [0]  # depth of the first traced call below the entry, 0: not in one

    def module_of(frame) -> str | None:
        name = frame.f_globals.get("__name__", "")
        return name if name == package or name.startswith(package + ".") else None

    def visit(module: str | None) -> None:
        if module is not None and (not rooms or rooms[-1] != module):
            rooms.append(module)

    def profile(frame, event, _arg):
        if event == "call":
            module = module_of(frame)
            parent = frame.f_back
            code = frame.f_code
            name = code.co_qualname.split(".")[0] if code.co_name == "__init__" else code.co_name  # Step(...)
            if not inside[0] and parent is not None and parent.f_code.co_name == entry_name \
                    and module_of(parent) == entry_module and name in calls:
                inside[0] = len(stack) + 1
                visit(entry_module)
            if inside[0] and module is not None and module in rooms and module not in stack:
                reentries[0] += 1
            stack.append(module)
            if inside[0]:
                visit(module)
        elif event == "return" and stack:
            stack.pop()
            if inside[0]:
                if len(stack) < inside[0]:
                    inside[0] = 0
                    visit(entry_module)
                else:
                    visit(next((m for m in reversed(stack) if m is not None), None))

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return rooms, reentries[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src")
    ap.add_argument("--entry", default="vicreg.training.setup:set_up", help="module:function that builds the step")
    ap.add_argument("--calls", nargs="+", default=["Step"], help="what the entry calls to build the step")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(args.src))
    import importlib

    from vicreg.config import build_config

    entry_module, entry_name = args.entry.split(":")
    set_up = getattr(importlib.import_module(entry_module), entry_name)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = build_config("demo", {"train.epochs": 1, "train.progress": False, "train.out_dir": tmp,
                                    "train.device": "cpu", "data.limit_train": 256, "data.limit_test": 64})
        run_dir = Path(tmp) / "walk"
        run_dir.mkdir()
        rooms, reentries = walk(entry_module, entry_name, set(args.calls), lambda: set_up(cfg, run_dir, lambda _: None))
    short = [r.removeprefix("vicreg.") for r in rooms]
    print(" -> ".join(short))
    print(f"{len(rooms)} rooms entered, {reentries} returns to a room already left")
    return 0


if __name__ == "__main__":
    sys.exit(main())
