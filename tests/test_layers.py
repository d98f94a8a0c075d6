"""The package's layering, read from the source with ``ast`` (nothing is imported).

* every module has a layer in ``diffusion_jax.LAYERS`` (the map lives there, beside the
  diagram in the package docstring);
* no module imports from a layer above its own, lazy imports inside functions included;
* there is no import cycle between modules;
* lessons import only public names: each name a lesson takes from a module, or reads as
  ``module.name``, is listed in that module's ``__all__`` (or is a submodule).
"""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG = ROOT / "diffusion_jax"


def _layers() -> dict:
    tree = ast.parse((PKG / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(getattr(t, "id", None) == "LAYERS" for t in targets):
                return eval(compile(ast.Expression(node.value), "LAYERS", "eval"), {"dict": dict})  # literals only
    raise AssertionError("diffusion_jax/__init__.py defines no LAYERS")


LAYERS = _layers()


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts)


def _modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not MODULES[module].name == "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> set[str]:
    """Every diffusion_jax module ``module`` imports, anywhere in its body."""
    out = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("diffusion_jax")}
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            if not target.startswith("diffusion_jax"):
                continue
            for a in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{target}.{a.name}"
                out.add(sub if sub in MODULES or f"{sub}.__init__" in MODULES else target)
    return {m if m in MODULES else f"{m}.__init__" for m in out} - {module}


def _key(module: str) -> str:
    """The LAYERS key of a module: its name under the package (``models.unet`` -> ``models``)."""
    parts = module.split(".")[1:]
    return parts[0] if parts else "__init__"


def test_every_module_has_a_layer():
    missing = sorted({_key(m) for m in MODULES} - set(LAYERS))
    assert not missing, f"modules without a layer in diffusion_jax.LAYERS: {missing}"


def test_no_module_imports_from_a_layer_above():
    bad = []
    for m in MODULES:
        for target in _imports(m):
            if _key(target) == _key(m):
                continue
            if LAYERS[_key(target)] > LAYERS[_key(m)]:
                bad.append(f"{m} (layer {LAYERS[_key(m)]}) imports {target} (layer {LAYERS[_key(target)]})")
    assert not bad, "upward imports:\n  " + "\n  ".join(bad)


def test_no_import_cycles():
    graph = {m: _imports(m) for m in MODULES}
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if n.endswith(".__init__") and n != "diffusion_jax.__init__" and n not in graph:
                continue
            if state.get(n) == "open":
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    # The package __init__ re-exports the maths core; a module reaching the root through
    # `from diffusion_jax import x` names the submodule x, so the root is a source only.
    cycles = [c for c in cycles if "diffusion_jax.__init__" not in c]
    assert not cycles, "import cycles:\n  " + "\n  ".join(" -> ".join(c) for c in cycles)


# ----------------------------------------------------------------------------- lessons


def _all_of(module: str) -> set[str] | None:
    path = MODULES.get(module) or MODULES.get(f"{module}.__init__")
    if path is None:
        return None
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    return set()


def _is_module(name: str) -> bool:
    return name in MODULES or f"{name}.__init__" in MODULES


LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.py"))


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_lessons_use_public_names_only(lesson):
    tree = ast.parse(lesson.read_text())
    aliases, bad = {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("diffusion_jax"):
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if _is_module(full):
                    aliases[a.asname or a.name] = full
                elif a.name not in (_all_of(node.module) or set()):
                    bad.append(f"from {node.module} import {a.name}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("diffusion_jax"):
                    aliases[a.asname or a.name.split(".")[0]] = a.asname and a.name or "diffusion_jax"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            module = aliases[node.value.id]
            if _is_module(f"{module}.{node.attr}"):
                continue
            if node.attr not in (_all_of(module) or set()):
                bad.append(f"{node.value.id}.{node.attr} ({module})")
    assert not bad, f"{lesson.name} uses names outside __all__: {sorted(set(bad))}"


def test_exercise_modules_have_no_private_reach_into_the_library():
    pattern = re.compile(r"\b(?:samplers|sampling|pipeline|metrics)\._[a-z]")
    hits = [f"{p.name}: {m.group(0)}" for p in (PKG / "exercises").glob("*.py") for m in pattern.finditer(p.read_text())]
    assert not hits, hits


def _public_definitions(path: pathlib.Path) -> set[str]:
    names = set()
    for n in ast.parse(path.read_text()).body:
        if isinstance(n, ast.FunctionDef | ast.ClassDef) and not n.name.startswith("_"):
            names.add(n.name)
    return names


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.endswith("__init__")))
def test_all_lists_every_public_function_and_class(module):
    declared = _all_of(module)
    if not declared:
        pytest.skip("no __all__ (not part of the public API)")
    defined = _public_definitions(MODULES[module])
    tree = ast.parse(MODULES[module].read_text())
    bound = defined | {t.id for n in tree.body if isinstance(n, ast.Assign | ast.AnnAssign)
                       for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
    bound |= {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom | ast.Import) for a in n.names}
    assert not (defined - declared), f"public but not in __all__: {sorted(defined - declared)}"
    assert not (declared - bound), f"in __all__ but not defined: {sorted(declared - bound)}"
