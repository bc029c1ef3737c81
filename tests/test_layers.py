"""The layers of docs/architecture.md, read from every import (in functions and under TYPE_CHECKING too) with ast.

A package may import its own layer or a lower one, never a higher one; a few lower pairs are forbidden outright
(models never reach the database or the campaign); no circle of modules or of packages.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Higher rank = higher layer; the ground floor ("") holds settings.py, errors.py and resources.py.
RANK = {
    "cli": 9,
    "flows": 8,
    "tasks": 7,
    "campaign": 6,
    "vdw": 5,
    "kappa": 5,
    "dft": 4,
    "screening": 4,
    "evaluation": 4,
    "models": 4,
    "infra": 3,
    "data": 2,
    "chemistry": 2,
    "": 1,
    "__main__": 10,
}
FORBIDDEN = {
    ("models", "infra"),
    ("models", "campaign"),
    ("models", "tasks"),
    ("models", "flows"),
    ("data", "infra"),
    ("chemistry", "infra"),
    ("screening", "flows"),
    ("evaluation", "infra"),
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """The crysloop modules ``path`` imports anywhere in its body (``from pkg import module`` names the module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("crysloop")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("crysloop"):
                submodules = {f"{target}.{alias.name}" for alias in node.names} & known
                found |= submodules if len(submodules) == len(node.names) else submodules | {target}
    return {m for m in found if m in known}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANK and parts[1] != "") else ""


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def layering(root: Path) -> dict[str, list]:
    """Upward imports, forbidden pairs and circles (modules, packages) of the package under ``root``."""
    files = sorted((root / "crysloop").rglob("*.py"))
    modules = {module_name(f, root): f for f in files}
    module_graph: dict[str, set[str]] = {}
    package_graph: dict[str, set[str]] = {}
    upward, forbidden = [], []
    for name, path in modules.items():
        targets = imported_modules(path, name, set(modules)) - {name}
        module_graph[name] = targets
        source = package_of(name)
        for target in targets:
            destination = package_of(target)
            if destination == source:
                continue
            package_graph.setdefault(source, set()).add(destination)
            if RANK[destination] > RANK[source]:
                upward.append(f"{name} -> {target}")
            if (source, destination) in FORBIDDEN:
                forbidden.append(f"{name} -> {target}")
    return {
        "upward": sorted(upward),
        "forbidden": sorted(forbidden),
        "package_circles": circles(package_graph),
        "module_circles": circles(module_graph),
        "packages": sorted(package_graph),
    }


def test_every_package_has_a_layer():
    packages = {p.name for p in (ROOT / "crysloop").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(RANK), f"packages without a layer: {sorted(packages - set(RANK))}"


def test_no_import_runs_up_a_layer_and_no_circles():
    found = layering(ROOT)
    assert found["upward"] == []
    assert found["forbidden"] == []
    assert found["package_circles"] == []
    assert found["module_circles"] == []


@pytest.mark.parametrize(
    ("module", "line", "kind"),
    [
        (
            "models/diffcsp/sampler.py",
            "def _planted():\n    from crysloop.flows.campaign import campaign_flow\n",
            "upward",
        ),
        ("models/slab.py", "from crysloop.infra.db import database\n", "forbidden"),
        (
            "screening/relax.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import crysloop.tasks.screen\n",
            "upward",
        ),
        ("chemistry/volume.py", "from crysloop.chemistry.valence import ValenceAssignment\n", "module_circles"),
    ],
)
def test_a_planted_bad_import_is_found(tmp_path, module, line, kind):
    shutil.copytree(ROOT / "crysloop", tmp_path / "crysloop", ignore=shutil.ignore_patterns("assets", "__pycache__"))
    target = tmp_path / "crysloop" / module
    if kind == "module_circles":  # volume -> valence above, and valence -> volume here: a circle
        (tmp_path / "crysloop" / "chemistry" / "valence.py").write_text(
            "from crysloop.chemistry.volume import rescale_to_expected_volume\n"
            + (tmp_path / "crysloop" / "chemistry" / "valence.py").read_text()
        )
    source = target.read_text()
    body = source.split("\n\n\n", 1)
    target.write_text(body[0] + "\n" + line + "\n\n" + (body[1] if len(body) > 1 else ""))
    assert layering(tmp_path)[kind], f"the planted import in {module} was not found"
