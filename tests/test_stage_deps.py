"""dvc.yaml's code deps are true: every stage depends on every quantlake module its command
can run, computed from the imports (AST), so a code change can never leave an output that
`dvc status` calls up to date; and params deps stay narrow (alpha params never re-run a data
stage)."""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "quantlake"
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
DATA_STAGES = ("discover", "ingest", "repair", "features", "audit", "report")
ALPHA_SECTIONS = ("selection", "synthesis", "optimization", "backtest")


def module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.exists():
            return path
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(nodes, current: str, is_package: bool) -> set[str]:
    """quantlake modules named by the import statements among `nodes` (submodules resolved)."""
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = current.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            out.add(target)
            out |= {f"{target}.{a.name}" for a in node.names if module_file(f"{target}.{a.name}")}
    return out


def with_parents(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def executed_nodes(tree: ast.Module):
    """Every node of a module that importing or using it can run: all of it, except a module
    `__getattr__` (PEP 562), which runs only when code asks the module for a missing name - the
    package's lazy `quantlake.open_lakehouse`, which no stage command asks for."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            continue
        yield from ast.walk(node)


def closure_of_command(command: str) -> set[Path]:
    """Every quantlake module file `quantlake <command>` can run: cli.py's module-level imports,
    the imports of its command function and of the cli helpers that function calls, then every
    import (module level or inside functions) of each module reached, transitively."""
    cli_path = SRC / PACKAGE / "cli.py"
    tree = ast.parse(cli_path.read_text())
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    todo, seen_fn, nodes = [f"cmd_{command}"], set(), [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    while todo:
        fn = todo.pop()
        if fn in seen_fn:
            continue
        seen_fn.add(fn)
        body = list(ast.walk(functions[fn]))
        nodes += body
        todo += [n.func.id for n in body if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in functions]
    modules = {f"{PACKAGE}.cli"}
    pending = set().union(*(with_parents(m) for m in imported_modules(nodes, f"{PACKAGE}.cli", False)))
    while pending:
        name = pending.pop()
        if name in modules or module_file(name) is None:
            continue
        modules.add(name)
        path = module_file(name)
        found = imported_modules(executed_nodes(ast.parse(path.read_text())), name, path.name == "__init__.py")
        pending |= set().union(set(), *(with_parents(m) for m in found)) - modules
    return {module_file(m) for m in modules}


def stage_command(stage: dict) -> str:
    words = stage["cmd"].split()
    assert words[0] == "quantlake", stage["cmd"]
    return words[1]


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


@pytest.mark.parametrize("name", sorted(DVC["stages"]))
def test_every_stage_depends_on_every_module_its_command_runs(name):
    stage = DVC["stages"][name]
    deps = [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]
    closure = closure_of_command(stage_command(stage))
    assert SRC / PACKAGE / "cli.py" in closure and SRC / PACKAGE / "params.py" in closure
    missing = sorted(str(p.relative_to(ROOT)) for p in closure if not covered(p, deps))
    assert not missing, f"stage {name} runs code it does not depend on: {missing}"


def test_the_closure_follows_imports_inside_functions():
    ingest = closure_of_command("ingest")
    assert SRC / PACKAGE / "data" / "ingest.py" in ingest  # imported inside run_ingest
    assert SRC / PACKAGE / "storage.py" in ingest and SRC / PACKAGE / "sources" / "sim.py" in ingest
    assert SRC / PACKAGE / "alpha" / "sections.py" in ingest  # the params model checks every section
    assert SRC / PACKAGE / "alpha" / "selection.py" not in ingest  # but runs no research code
    assert SRC / PACKAGE / "alpha" / "optimize.py" in closure_of_command("optimize")


@pytest.mark.parametrize("name", DATA_STAGES)
def test_data_stages_never_depend_on_alpha_params_or_research_code(name):
    stage = DVC["stages"][name]
    params = [p if isinstance(p, str) else next(iter(p)) for p in stage.get("params", [])]
    assert not [p for p in params if p.split(".")[0] in ALPHA_SECTIONS]
    deps = [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]
    assert "src/quantlake/alpha" not in deps
    allowed = {"src/quantlake/alpha/__init__.py", "src/quantlake/alpha/sections.py"}  # the params schema only
    assert not [d for d in deps if d.startswith("src/quantlake/alpha/") and d not in allowed]
