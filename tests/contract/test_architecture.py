"""The rooms of docs/architecture.md keep their walls: who may import whom, no import cycles,
no module over 400 lines outside tests/."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Package name -> its folder.
PACKAGES = {
    "nst": ROOT / "handler" / "nst",
    "nst_http": ROOT / "handler" / "nst_http",
    "nst_jobs": ROOT / "handler" / "nst_jobs",
    "nst_service": ROOT / "handler" / "nst_service",
    "nst_client": ROOT / "client_sdk" / "src" / "nst_client",
}
#: What each room must not import (top-level module names).
FORBIDDEN = {
    "nst": {"nst_http", "nst_handler", "ts", "requests", "httpx", "http"},
    "nst_http": {"nst_handler", "ts", "requests", "httpx"},
    "nst_jobs": {"torch", "torchvision", "nst", "nst_http", "nst_handler", "ts", "requests", "httpx"},
    "nst_service": {"nst_handler", "ts", "requests", "httpx"},
    "nst_client": {"torch", "torchvision", "nst", "nst_http", "nst_handler", "ts"},
}
MAX_LINES = 400
HANDLER = ROOT / "handler" / "nst_handler.py"
#: The TorchServe adapter's most lines: it maps TorchServe onto the service, and nothing more.
HANDLER_MAX_LINES = 150


def module_name(path: Path, package: str) -> str:
    parts = path.relative_to(PACKAGES[package]).with_suffix("").parts
    return ".".join((package, *parts)).removesuffix(".__init__")


def modules(package: str) -> dict[str, Path]:
    return {module_name(p, package): p for p in sorted(PACKAGES[package].rglob("*.py"))}


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports(path: Path, name: str) -> Iterator[str]:
    """Every module ``path`` (module ``name``) imports at run time, top level or in a function,
    as absolute dotted names (``from . import x`` as ``pkg.x``)."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if node.module:  # `from . import color` imports the module nst.color, not the package
                yield target
            for alias in node.names:
                yield f"{target}.{alias.name}"


def graph(package: str) -> dict[str, set[str]]:
    """Imports between the modules of ``package``."""
    mods = modules(package)
    return {name: {t for t in imports(path, name) if t in mods and t != name} for name, path in mods.items()}


@pytest.mark.parametrize("package", list(PACKAGES))
def test_no_room_imports_what_it_must_not(package: str) -> None:
    bad = sorted(
        f"{name} imports {target}"
        for name, path in modules(package).items()
        for target in imports(path, name)
        if target.split(".")[0] in FORBIDDEN[package]
    )
    assert not bad


def test_the_handler_is_the_only_torchserve_module() -> None:
    assert any(t.split(".")[0] == "ts" for t in imports(HANDLER, "nst_handler"))


def test_the_handler_adapts_torchserve_to_the_service_and_nothing_more() -> None:
    outside = {t.split(".")[0] for t in imports(HANDLER, "nst_handler")} - set(sys.stdlib_module_names)
    assert outside == {"nst_service", "ts"}
    assert len(HANDLER.read_text().splitlines()) <= HANDLER_MAX_LINES


def test_the_handler_module_defines_one_class() -> None:
    # TorchServe 0.12 loads the one class of the handler module and refuses a module with more
    # ("Expected only one class in custom service code"): records live in nst_http.
    tree = ast.parse(HANDLER.read_text())
    assert [n.name for n in tree.body if isinstance(n, ast.ClassDef)] == ["NSTHandler"]


@pytest.mark.parametrize("package", list(PACKAGES))
def test_no_import_cycles(package: str) -> None:
    edges = graph(package)
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                pytest.fail("import cycle: " + " -> ".join(path[path.index(nxt):] + [node, nxt]))
            if nxt not in state:
                visit(nxt, [*path, node] if nxt not in path else path)
        state[node] = "done"

    for start in sorted(edges):
        if start not in state:
            visit(start, [])


def test_the_cycle_check_finds_a_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "a.py").write_text("from .b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from . import a\n")
    monkeypatch.setitem(PACKAGES, "probe", tmp_path)
    assert graph("probe") == {"probe": set(), "probe.a": {"probe.b"}, "probe.b": {"probe.a"}}
    with pytest.raises(pytest.fail.Exception, match="import cycle"):
        test_no_import_cycles("probe")


def source_files() -> list[Path]:
    """The project's Python outside tests/ (and outside the virtualenv and build output)."""
    roots = [ROOT / "handler", ROOT / "client_sdk" / "src", ROOT / "scripts", ROOT / "benchmarks"]
    return sorted(p for root in roots for p in root.rglob("*.py"))


def test_no_module_outside_tests_is_over_400_lines() -> None:
    files = source_files()
    assert len(files) > 20
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long
