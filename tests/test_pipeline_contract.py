"""The pipeline contract: dvc.yaml, params.yaml, the config classes, the CLI and the imports agree.

- every dvc.yaml stage is a `taco` stage subcommand (the ``STAGES`` table, in the same order)
  with a params section of the same name, and runs ``python -m taco <stage>``;
- the import closure of a stage's module (every ``taco`` module it reaches, lazy imports
  included) is covered by the stage's code deps, so editing any of it reruns the stage;
- every ``params:`` key of dvc.yaml exists in the config classes;
- the dataclass defaults equal params.yaml (one set of defaults);
- no import cycle inside ``taco``, and the layering rules of DESIGN.md hold.
"""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path

import pytest
import yaml

from taco.cli import STAGES
from taco.config import Params, load_params, sections, to_dict
from tests.helpers.paths import ROOT

TACO = ROOT / "taco"


def module_file(name: str) -> Path | None:
    """The file of module ``taco.x.y`` (a module or a package's __init__), or None."""
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(name: str) -> set[str]:
    """``taco`` modules that module ``name`` imports anywhere in its body (lazy imports too)."""
    file = module_file(name)
    assert file is not None, name
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "taco"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "taco":
                continue
            for alias in node.names:  # `from taco.rl import policy` imports a module
                sub = f"{node.module}.{alias.name}"
                found.add(sub if module_file(sub) else node.module)
    return {m for m in found if module_file(m) is not None and m != name}


def closure(name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        mod = todo.pop()
        if mod not in seen:
            seen.add(mod)
            todo.extend(imports_of(mod))
    return seen


def uncovered(module: str, deps: list[str]) -> list[str]:
    """Files of ``module``'s import closure that no dep (a file or a folder) covers."""
    paths = [ROOT / d for d in deps]
    missing = []
    for mod in sorted(closure(module)):
        file = module_file(mod)
        assert file is not None
        if mod == "taco" or file == TACO / "__init__.py":
            continue  # the package marker: version string and lazy re-exports only
        if not any(file == p or p in file.parents for p in paths):
            missing.append(file.relative_to(ROOT).as_posix())
    return missing


def dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def code_deps(stage: dict) -> list[str]:
    return [d for d in stage.get("deps", []) if not d.startswith("${")]


def test_stage_names_agree_everywhere() -> None:
    dvc = dvc_stages()
    cli = [s.name for s in STAGES]
    assert list(dvc) == cli, "dvc.yaml stages and the CLI's STAGES table differ (or their order)"
    for name in cli:
        assert name in sections(), f"stage {name!r} has no params section"
        assert dvc[name]["cmd"].split()[:4] == ["python", "-m", "taco", name]
    yaml_sections = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert list(yaml_sections) == list(sections()), "params.yaml sections differ from Params"


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_stage_import_closure_is_covered_by_its_deps(stage) -> None:
    deps = code_deps(dvc_stages()[stage.name])
    assert not uncovered(stage.module, deps), (
        f"dvc.yaml stage {stage.name!r} does not depend on code its module imports: "
        f"{uncovered(stage.module, deps)}"
    )


def test_the_check_fails_when_a_dep_is_removed() -> None:
    deps = code_deps(dvc_stages()["train"])
    for dep in deps:
        if dep.endswith(".py") or (ROOT / dep).is_dir():
            fewer = [d for d in deps if d != dep]
            assert uncovered("taco.rl.train", fewer), f"removing {dep} went unnoticed"


def _key_exists(key: str) -> bool:
    obj: typing.Any = Params()
    for part in key.split("."):
        if not dataclasses.is_dataclass(obj) or part not in {
            f.name for f in dataclasses.fields(obj)
        }:
            return False
        obj = getattr(obj, part)
    return True


def test_every_dvc_params_key_exists() -> None:
    for name, stage in dvc_stages().items():
        for entry in stage.get("params", []):
            keys = entry if isinstance(entry, dict) else [entry]
            for key in keys:
                assert _key_exists(key), f"dvc.yaml stage {name}: params key {key!r} is unknown"


def test_dataclass_defaults_equal_params_yaml() -> None:
    assert to_dict(load_params(ROOT / "params.yaml")) == to_dict(Params())


def test_renamed_key_names_the_new_one(tmp_path: Path) -> None:
    from taco.config import ConfigError

    path = tmp_path / "params.yaml"
    path.write_text("warmstart:\n  teacher: none\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"warmstart\.teacher: renamed to warmstart\.labels"):
        load_params(path)


def all_modules() -> list[str]:
    mods = []
    for file in sorted(TACO.rglob("*.py")):
        rel = file.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods.append(".".join(parts))
    return mods


def test_no_import_cycle() -> None:
    graph = {m: imports_of(m) for m in all_modules()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for mod in graph:
        if mod not in state:
            visit(mod, [mod])


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("taco.compress", ("taco.llm", "taco.rl", "taco.data", "taco.eval", "taco.tasks")),
        ("taco.llm", ("taco.tasks", "taco.rl", "taco.eval", "taco.compress")),
    ],
)
def test_layering(package: str, forbidden: tuple[str, ...]) -> None:
    for mod in all_modules():
        if mod == package or mod.startswith(package + "."):
            bad = [m for m in imports_of(mod) if m.startswith(forbidden)]
            assert not bad, f"{mod} imports {bad}: {package} must not depend on {forbidden}"


def test_nothing_in_taco_imports_airflow() -> None:
    for file in TACO.rglob("*.py"):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(n.split(".")[0] == "airflow" for n in names), file


def _chain(dag: typing.Any) -> list[str]:
    """The task ids of a DAG that must be one straight chain, in order."""
    assert len(dag.roots) == 1, f"{dag.dag_id}: roots {[t.task_id for t in dag.roots]}"
    out, task = [], dag.roots[0]
    while True:
        out.append(task.task_id)
        nxt = list(task.downstream_list)
        if not nxt:
            return out
        assert len(nxt) == 1, f"{dag.dag_id}: {task.task_id} fans out to {nxt}"
        task = nxt[0]


def test_the_dags_run_the_stages_by_their_names_in_order() -> None:
    """taco_retrain's tasks are the CLI's STAGES (= dvc.yaml's stages) in order, then lineage;
    taco_reproduce reruns stages of the same names between restore and compare."""
    from airflow.models import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    stages = [s.name for s in STAGES]
    assert list(dvc_stages()) == stages
    assert _chain(bag.dags["taco_retrain"]) == [*stages, "lineage"]
    reproduce = _chain(bag.dags["taco_reproduce"])
    assert reproduce[0] == "restore" and reproduce[-1] == "compare" and "evaluate" in reproduce
    assert reproduce[1:-1] == [s for s in stages if s in reproduce[1:-1]]
