"""Layering: which part of satcodec may import which -- one table, every module checked.

:data:`ALLOWED` is the architecture: ``part -> parts it may import``. Each module belongs to the
part of its longest matching prefix in :data:`PARTS`. The check is static (the AST of every
file under ``satcodec/``), so it sees module-level *and* function-level (lazy) imports, relative
imports, and module paths given as strings (``importlib.import_module("satcodec.x")``,
``"satcodec.x:attr"``). Not counted: ``if TYPE_CHECKING:`` blocks (never run) and
``if __name__ == "__main__":`` blocks (a module run as a script is an entry point, like the CLI).
For the parts in :data:`RUNTIME`, a subprocess also imports every module of the part and checks
that nothing outside what the table lets it reach got loaded (side effects of package roots).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "satcodec"

# part -> module prefixes; the longest matching prefix decides
PARTS: dict[str, tuple[str, ...]] = {
    "core": ("satcodec.errors", "satcodec.fileutil", "satcodec.metrics", "satcodec.raster"),
    "train": ("satcodec.train",),
    "entropy": ("satcodec.entropy",),
    "bitstream": ("satcodec.bitstream",),
    "codec": ("satcodec.codec",),  # the models, layers, training data and weights registry
    # the coding pipeline: tiles, analysis, rate control, entropy models, streams (and the
    # temporary re-exports of its old home)
    "coding": ("satcodec.coding",),
    "export": ("satcodec.export",),
    "api": ("satcodec", "satcodec.api"),  # the package root is the API's (lazy) facade
    "demo": ("satcodec.demo",),
    "ground_segment": ("satcodec.ground_segment",),
    "evaluation": ("satcodec.evaluation",),
    "research": ("satcodec.research",),
    "benchmarks": ("satcodec.benchmarks",),
    "shipping": ("satcodec.shipping",),  # a training run -> weights + card in the package
    "cli": ("satcodec.cli", "satcodec.__main__"),
}
PRODUCT = {"core", "entropy", "bitstream", "codec", "coding", "export", "api"}

# part -> the parts it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "train": {"core"},
    "entropy": {"core"},
    "bitstream": {"core"},
    "codec": {"core", "train", "bitstream"},  # the stream's default stride and supported ones
    "coding": {"core", "entropy", "bitstream", "codec"},
    "export": {"core", "codec", "coding"},
    "api": {"core", "entropy", "bitstream", "codec", "coding", "export"},
    "ground_segment": PRODUCT | {"train"},
    "evaluation": PRODUCT | {"train"},
    "demo": {"core", "api", "evaluation"},
    "research": {"core", "train"},
    "benchmarks": PRODUCT | {"train", "ground_segment", "evaluation", "research"},
    "shipping": PRODUCT | {"train", "ground_segment", "evaluation"},
    "cli": set(PARTS) - {"cli"},
}
# parts that must not depend on these third-party modules (top-level names)
FORBIDDEN_THIRD_PARTY: dict[str, set[str]] = {
    "research": {"sbi", "sbibm"},  # the ABC benchmark's anchors only
}
# parts whose modules are also imported in a subprocess, checking what gets loaded
RUNTIME = ("research", "train", "entropy", "bitstream", "codec", "coding", "api", "evaluation")


def part_of(module: str) -> str | None:
    best = None
    for part, prefixes in PARTS.items():
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (
                best is None or len(p) > len(best[1])
            ):
                best = (part, p)
    return best[0] if best else None


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(rel[:-1] if rel[-1] == "__init__" else rel)


def _is_module(name: str) -> bool:
    base = PKG.parent.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _skipped_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = ast.unparse(node.test)
    return test in ("TYPE_CHECKING", "typing.TYPE_CHECKING") or test in (
        "__name__ == '__main__'",
        '__name__ == "__main__"',
    )


MODULE_STRING = re.compile(r"satcodec(\.\w+)+(:\w+)?")
ROOT_API = {"encode", "decode", "encode_file", "decode_file", "open"}


def _targets(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) of every import in the file, lazy ones included."""
    module = _module_name(path)
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    out: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if _skipped_block(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for a in node.names:
                # `import satcodec` is for the API facade (satcodec.encode, ...)
                out.append((node.lineno, "satcodec.api" if a.name == "satcodec" else a.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                src = ".".join([*base, *([node.module] if node.module else [])])
            else:
                src = node.module or ""
            for a in node.names:
                full = f"{src}.{a.name}"
                if _is_module(full):
                    out.append((node.lineno, full))
                elif src == "satcodec":  # the root's own names: __version__ (core) or the API
                    out.append(
                        (node.lineno, "satcodec.api" if a.name in ROOT_API else "satcodec.errors")
                    )
                else:
                    out.append((node.lineno, src))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and MODULE_STRING.fullmatch(node.value)
            and _is_module(node.value.split(":")[0])  # not e.g. an entry point group's name
        ):
            out.append((node.lineno, node.value.split(":")[0]))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


@cache
def _files() -> dict[str, list[Path]]:
    by_part: dict[str, list[Path]] = {}
    for f in sorted(PKG.rglob("*.py")):
        part = part_of(_module_name(f))
        assert part is not None, f"{f} belongs to no part: add it to PARTS"
        by_part.setdefault(part, []).append(f)
    return by_part


def _closure(part: str) -> set[str]:
    seen, todo = {part}, [part]
    while todo:
        for q in ALLOWED[todo.pop()]:
            if q not in seen:
                seen.add(q)
                todo.append(q)
    return seen


def test_the_table_is_a_layering():
    """Every part has a row, nothing imports the CLI, and the arrows have no cycle."""
    assert set(ALLOWED) == set(PARTS)
    assert all(set(v) <= set(PARTS) for v in ALLOWED.values())
    assert not [p for p, v in ALLOWED.items() if "cli" in v]
    assert not [p for p, v in ALLOWED.items() if "benchmarks" in v and p != "cli"]
    for p in PARTS:
        assert all(p not in _closure(q) for q in ALLOWED[p]), f"cycle through {p}"
    # the rules the table must keep (issue 19)
    assert not ALLOWED["research"] & {"codec", "coding", "api", "cli", "export"}
    assert not ALLOWED["research"] & {"ground_segment", "evaluation", "benchmarks"}
    assert not ALLOWED["codec"] & {"research", "evaluation", "cli", "ground_segment", "benchmarks"}
    assert not (ALLOWED["bitstream"] | ALLOWED["entropy"]) & {"codec", "coding"}
    assert not ALLOWED["coding"] & {"export", "api"}  # the coder is given its transforms
    assert not ALLOWED["train"] & {"codec", "coding", "research"}


@pytest.mark.parametrize("part", list(PARTS))
def test_imports_follow_the_table(part):
    files = _files().get(part, [])
    assert files, f"no module of part {part}"
    bad = []
    for f in files:
        for line, target in _targets(f):
            top = target.split(".")[0]
            if top in FORBIDDEN_THIRD_PARTY.get(part, ()):
                bad.append(f"{f.relative_to(PKG.parent)}:{line} imports {target}")
            if top != "satcodec":
                continue
            to = part_of(target)
            if to != part and to not in ALLOWED[part]:
                bad.append(f"{f.relative_to(PKG.parent)}:{line} ({part}) imports {target} ({to})")
    assert not bad, "\n".join(bad)
    if part not in RUNTIME:
        return
    modules = [_module_name(f) for f in files]
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('satcodec'))))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    loaded = json.loads(r.stdout.strip().splitlines()[-1])
    reach = _closure(part)
    # (the package root is loaded by any import; its API names load only when used)
    outside = [m for m in loaded if m != "satcodec" and part_of(m) not in reach]
    assert not outside, f"importing {part} loads {outside}"


def test_no_import_cycles_between_modules():
    """No module imports, even lazily, one that imports it back (directly or around a loop);
    a package and its own submodules excepted. (inna_bench <-> recsys_bench was one.)"""
    graph: dict[str, set[str]] = {}
    for files in _files().values():
        for f in files:
            m = _module_name(f)
            graph[m] = set()
            for _, t in _targets(f):
                while t.startswith("satcodec") and not _is_module(t):  # a name in a module
                    t = t.rsplit(".", 1)[0]
                if t.startswith("satcodec") and not (
                    t == m or t.startswith(m + ".") or m.startswith(t + ".")
                ):
                    graph[m].add(t)

    def reaches(start: str, goal: str) -> list[str] | None:
        paths, seen = [[start]], {start}
        while paths:
            path = paths.pop()
            for n in sorted(graph.get(path[-1], ())):
                if n == goal:
                    return [*path, n]
                if n not in seen:
                    seen.add(n)
                    paths.append([*path, n])
        return None

    loops = {
        " -> ".join(loop) for m in graph for n in graph[m] if (loop := reaches(n, m)) is not None
    }
    assert not loops, "\n".join(sorted(loops))
