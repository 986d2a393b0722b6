"""The layering rules of docs/style.md, read from the source with ``ast`` (nothing is imported but
in the last test, which checks the same promise at run time).

- No import cycle among ferdata's modules. Every ``import`` counts, at module level or inside a
  function: an import deferred into a function (to keep ``ferdata --help`` fast) is still a
  dependency, and two modules that each need the other are one job split badly. Imports under
  ``if TYPE_CHECKING:`` do not count (they never run). ``from . import x`` counts as an import of
  the submodule ``x``, not of its package, and a package's ``__init__`` may import its own
  submodules (re-exports), so those parent-package edges are left out.
- Only ``ferdata/cli/`` imports typer and rich (the library never prints or parses flags).
- Only ``ferdata/train/`` imports torch and torchvision.
- ``schema``, ``relabel``, ``pairs`` and ``folds`` import nothing from ``cli``, ``vision`` or
  ``train``: the pure table functions stay pure.
- Heavy packages (torch, onnxruntime, datasets, OpenCV, insightface, ...) are imported inside the
  functions that use them; the two torch-only modules of the trainer are the exception, and no
  chain of module-level imports from ``ferdata`` or its CLI reaches them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ferdata"
HEAVY = ("torch", "torchvision", "onnxruntime", "datasets", "cv2", "insightface", "sklearn", "matplotlib",
         "skimage", "huggingface_hub", "retinaface")
# Modules that exist only to be imported inside the trainer's functions: torch at their top is fine.
HEAVY_AT_TOP_ALLOWED = {"ferdata.train.models", "ferdata.train.losses"}
PURE = ("ferdata.schema", "ferdata.relabel", "ferdata.pairs", "ferdata.folds")


@dataclass(frozen=True)
class Import:
    module: str  # the importing ferdata module
    target: str  # what it imports: a ferdata module, or a third-party top-level package
    line: int
    top_level: bool  # at module level (runs on import) rather than inside a function or class body


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for inner in ast.walk(node))
    return skipped


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    known = modules()
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        # ``from pkg import sub`` imports the submodule; ``from mod import name`` imports ``mod``
        subs = [f"{prefix}.{alias.name}" for alias in node.names if f"{prefix}.{alias.name}" in known]
        names = subs if len(subs) == len(node.names) else [prefix, *subs]
    out = []
    for name in names:
        if name.split(".")[0] == "ferdata":
            while name not in known and "." in name:  # ``import ferdata.x.y`` where y is an attribute
                name = name.rsplit(".", 1)[0]
            out.append(name)
        else:
            out.append(name.split(".")[0])
    return out


@cache
def imports() -> tuple[Import, ...]:
    found = []
    for module, path in modules().items():
        tree = ast.parse(path.read_text(), filename=str(path))
        skipped = _type_checking_nodes(tree)
        top = {id(node) for node in tree.body}
        top |= {id(inner) for node in tree.body if isinstance(node, (ast.If, ast.Try)) for inner in ast.walk(node)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skipped:
                for target in _targets(module, path.name == "__init__.py", node):
                    if target != module:
                        found.append(Import(module, target, node.lineno, id(node) in top))
    return tuple(found)


def _where(imp: Import) -> str:
    return f"{modules()[imp.module].relative_to(PACKAGE.parent)}:{imp.line} imports {imp.target}"


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _is_parent_package(module: str, target: str) -> bool:
    return module.startswith(target + ".") or target.startswith(module + ".")


def test_the_scanner_sees_deferred_imports_and_skips_type_checking_ones():
    found = {(i.module, i.target, i.top_level) for i in imports()}
    assert ("ferdata.train.loop", "ferdata.train.report", False) in found  # ``from . import report`` in a function
    assert ("ferdata.train.models", "torch", True) in found
    assert ("ferdata.cli.common", "typer", True) in found
    assert not any(i.module == "ferdata.masks.tagging" and i.target == "ferdata.workspace" for i in imports())  # TYPE_CHECKING


def test_no_import_cycles():
    internal = [i for i in imports() if i.target in modules() and not _is_parent_package(i.module, i.target)]
    edges: dict[str, set[str]] = {}
    for imp in internal:
        edges.setdefault(imp.module, set()).add(imp.target)
    cycles = _cycles(edges)
    detail = [" <-> ".join(c) + ": " + "; ".join(_where(i) for i in internal if i.module in c and i.target in c) for c in cycles]
    assert not cycles, "import cycles:\n" + "\n".join(detail)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_only_the_cli_imports_typer_and_rich():
    outside = [_where(i) for i in imports() if i.target in ("typer", "rich", "click") and not i.module.startswith("ferdata.cli")]
    assert not outside, outside


def test_only_the_trainer_imports_torch():
    outside = [_where(i) for i in imports() if i.target in ("torch", "torchvision") and not i.module.startswith("ferdata.train")]
    assert not outside, outside


def test_the_pure_table_modules_import_no_cli_vision_or_train():
    layers = ("ferdata.cli", "ferdata.vision", "ferdata.train")
    wrong = [_where(i) for i in imports() if i.module in PURE and i.target.startswith(layers)]
    assert not wrong, wrong


def test_heavy_packages_are_imported_inside_functions():
    wrong = [_where(i) for i in imports() if i.top_level and i.target in HEAVY and i.module not in HEAVY_AT_TOP_ALLOWED]
    assert not wrong, wrong


def test_no_module_level_import_chain_from_ferdata_or_its_cli_reaches_a_heavy_package():
    top = {}
    for imp in imports():
        if imp.top_level:
            top.setdefault(imp.module, []).append(imp)
    roots = ["ferdata", *(m for m in modules() if m.startswith("ferdata.cli"))]
    seen, todo, via = set(roots), list(roots), {r: [r] for r in roots}
    heavy = []
    while todo:
        module = todo.pop()
        for imp in top.get(module, []):
            if imp.target in HEAVY:
                heavy.append(" -> ".join(via[module]) + f" -> {imp.target} ({_where(imp)})")
            elif imp.target in modules() and imp.target not in seen:
                seen.add(imp.target)
                via[imp.target] = [*via[module], imp.target]
                todo.append(imp.target)
    assert not heavy, heavy


def test_importing_the_cli_loads_no_heavy_package():
    """The same promise at run time, in a fresh interpreter: ``ferdata --help`` stays fast."""
    code = "import sys, ferdata, ferdata.cli; print(' '.join(sorted(m for m in %r if m in sys.modules)))" % (HEAVY,)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert result.stdout.strip() == ""
