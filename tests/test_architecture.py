"""The house rules, checked on the source: ``trainers/`` and ``ray_cluster/`` stand alone, no
import cycles, no module takes another's private names, every use of Ray's or Optuna's
private attributes in one module, modules of a few hundred lines; ``trainers/`` runs a proxy
fine-tune from a copy of it alone; importing the package or a pure module loads no job."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import ROOT

PACKAGES = ("allocator", "trainers", "ray_cluster")
PRIVATE_ATTRIBUTES_MODULE = "allocator.search.extensions"  # Ray's, Optuna's and MLflow's private names live here alone
MAX_LINES = 500


def modules(root: Path) -> dict[str, Path]:
    """The project's modules under ``root``: dotted name -> file."""
    out = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def imports(path: Path, name: str) -> Iterator[tuple[str, list[str], int]]:
    """Every import in a module, at module level or inside functions: ``(module, names, line)``
    (relative imports resolved; ``names`` empty for ``import x``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            yield base, [a.name for a in node.names], node.lineno


def violations(root: Path) -> list[str]:
    """What breaks the house rules in the tree at ``root`` (empty when nothing does)."""
    mods = modules(root)
    found: list[str] = []
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        where = f"{path.relative_to(root)}"
        top = name.split(".")[0]
        for target, names, line in imports(path, name):
            head = target.split(".")[0]
            if top == "trainers" and head in ("allocator", "ray_cluster", "ray", "mlflow", "optuna", "datasets"):
                found.append(f"{where}:{line}: trainers imports {target}")
            if top == "ray_cluster" and head in ("allocator", "trainers", "mlflow", "optuna"):
                found.append(f"{where}:{line}: ray_cluster imports {target}")
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and head in PACKAGES:
                found.append(f"{where}:{line}: takes private names {', '.join(private)} from {target}")
            elif private and name != PRIVATE_ATTRIBUTES_MODULE:  # a library's private names: one module
                found.append(f"{where}:{line}: takes private names {', '.join(private)} from {target}")
            for part_at, part in enumerate(target.split(".")):
                # a private module (_x) is its package's own business
                if part.startswith("_") and not part.startswith("__") and head in PACKAGES:
                    owner = ".".join(target.split(".")[:part_at])
                    if name != owner and not name.startswith(owner + "."):
                        found.append(f"{where}:{line}: imports the private module {target} from outside {owner}")
            # the edge goes to the most specific project module the import names
            candidates = [f"{target}.{n}" for n in names] + [target]
            for c in candidates:
                if c in mods and c != name:
                    graph[name].add(c)
                    if c != target:
                        break
    for cycle in _cycles(graph):
        found.append("import cycle: " + " -> ".join([*cycle, cycle[0]]))
    for name, path in mods.items():
        if name == PRIVATE_ATTRIBUTES_MODULE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                owner = node.value
                if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                    found.append(f"{path.relative_to(root)}:{node.lineno}: private attribute .{node.attr}")
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            found.append(f"{path.relative_to(root)}: {lines} lines (more than {MAX_LINES})")
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_project_keeps_the_house_rules():
    assert violations(ROOT) == []


def test_the_checker_catches_each_kind_of_break(tmp_path):
    # a small tree that breaks every rule once: the check above can fail
    files = {
        "allocator/__init__.py": "",
        "allocator/a.py": "def f():\n    from allocator.b import g\n",
        "allocator/b.py": "from allocator.a import f\nfrom allocator.c import _hidden\n",
        "allocator/c.py": "_hidden = 1\ndef h(study):\n    return study._storage\n",
        "allocator/pkg/__init__.py": "",
        "allocator/pkg/_inner.py": "x = 1\n",
        "allocator/d.py": "from allocator.pkg._inner import x\n" + "y = 1\n" * MAX_LINES,
        "trainers/__init__.py": "",
        "trainers/t.py": "def run():\n    import allocator.errors\n    import ray\n",
        "ray_cluster/__init__.py": "from allocator import errors\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found = "\n".join(violations(tmp_path))
    for needle in [
        "trainers/t.py:2: trainers imports allocator.errors",
        "trainers/t.py:3: trainers imports ray",
        "ray_cluster/__init__.py:1: ray_cluster imports allocator",
        "allocator/b.py:2: takes private names _hidden from allocator.c",
        "allocator/d.py:1: imports the private module allocator.pkg._inner from outside allocator.pkg",
        "import cycle: allocator.a -> allocator.b -> allocator.a",
        "allocator/c.py:3: private attribute ._storage",
        f"allocator/d.py: {MAX_LINES + 1} lines",
    ]:
        assert needle in found, found


# what the GPU box lacks: the orchestration libraries and this project's other packages
ABSENT = ("allocator", "ray", "ray_cluster", "mlflow", "optuna", "datasets")


def site_without(absent: tuple[str, ...], into: Path) -> Path:
    """A view of this environment's site-packages without the ``absent`` distributions (their
    packages and metadata) and without the editable install of this project: to Python and to
    importlib.metadata, they are not installed."""
    import torch

    site = Path(torch.__file__).resolve().parents[1]
    blocked = {name.replace("-", "_") for name in absent} | {"mlflow_skinny", "mlflow_tracing"}
    into.mkdir()
    for entry in site.iterdir():
        base = entry.name.split("-")[0].split(".")[0].lower().replace("-", "_")
        if base in blocked or entry.name.startswith("__editable__"):
            continue
        (into / entry.name).symlink_to(entry)
    return into


# a short proxy fine-tune and an evaluation through the plain-call API, on hand-made examples
PROXY_ALONE = """
import importlib.util, json, sys
assert all(importlib.util.find_spec(m) is None for m in ABSENT), [m for m in ABSENT if importlib.util.find_spec(m)]
import torch
import trainers
from trainers import CharTokenizer, HeldoutItem, ModelSpec, PretrainRecipe, ProxyRecipe, build_or_load_base, evaluate
from trainers import prompt_length, run_proxy

tok = CharTokenizer()
def encode(prompt, answer):
    return tok.encode_example(prompt, answer)
words = ["ab", "cd", "ef", "gh", "ij", "kl", "mn", "op"]
train = {"copy": [encode(f"repeat: {w}", w) for w in words], "upper": [encode(f"upper: {w}", w.upper()) for w in words]}
held = {}
for a, pairs in {"copy": [("repeat: qr", "qr")], "upper": [("upper: st", "ST")]}.items():
    items = []
    for p, r in pairs:
        ids, mask = encode(p, r)
        items.append(HeldoutItem(ids=ids, mask=mask, prompt=prompt_length(mask), reference=r))
    held[a] = items
spec = ModelSpec(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_length=32)
base = build_or_load_base(spec, PretrainRecipe(steps=3, batch_size=4), tok=tok, threads=1).ref(spec)
metrics, max_new = {"copy": "exact_match", "upper": "loss"}, {"copy": 4, "upper": 4}
before = evaluate(base.load(tok), tok, held, metrics=metrics, max_new=max_new, max_length=32)
reports = []
result = run_proxy(model=base, tokenizer=tok.spec(), train=train, heldout=held, metrics=metrics, max_new=max_new,
                   mixture={"copy": 6, "upper": 6}, recipe=ProxyRecipe(epochs=2, batch_size=4, reports=2), seed=0,
                   report=lambda step, scores, perf: reports.append(step))
blocked = [m for m in ABSENT if m in sys.modules]
print(json.dumps({"file": trainers.__file__, "before": before, "scores": result.scores, "steps": result.steps,
                  "reports": reports, "loaded": blocked, "peft": "peft" in sys.modules}))
"""


def test_trainers_alone_run_a_proxy_fine_tune_and_an_evaluation(tmp_path):
    # a copy of trainers/ and nothing else of the repository, over an environment where the
    # project's other packages and the orchestration libraries are not installed (a GPU box
    # with only torch, transformers and peft); no site hooks, no PYTHONPATH
    shutil.copytree(ROOT / "trainers", tmp_path / "trainers", ignore=shutil.ignore_patterns("__pycache__"))
    site = site_without(ABSENT, tmp_path / "site-packages")
    (tmp_path / "run.py").write_text(f"ABSENT = {ABSENT!r}\n" + textwrap.dedent(PROXY_ALONE))
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "ALLOCATOR_CACHE_DIR": str(tmp_path / "cache")}
    code = f"import sys; sys.path[:0] = [{str(tmp_path)!r}, {str(site)!r}]; exec(open('run.py').read())"
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["file"] == str(tmp_path / "trainers" / "__init__.py")
    assert out["loaded"] == [] and out["peft"]  # LoRA through peft, nothing of the orchestration
    assert out["steps"] == 6 and out["reports"] == [3, 6]  # ceil(12 examples * 2 epochs / 4)
    assert set(out["scores"]) == {"copy", "upper"} and set(out["scores"]["copy"]) == {"loss", "exact_match"}
    assert out["scores"]["upper"]["loss"] < out["before"]["upper"]["loss"]  # it learned something


@pytest.mark.parametrize("statement", ["import allocator", "from allocator.curves import scoring"])
def test_importing_the_package_or_a_pure_module_loads_no_job(statement):
    code = f"""
import sys
{statement}
heavy = [m for m in ("torch", "ray", "mlflow", "optuna", "transformers") if m in sys.modules]
jobs = [m for m in sys.modules if m.startswith(("allocator.search", "allocator.studies", "allocator.trial"))]
print(heavy, jobs)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == "[] []", proc.stdout + proc.stderr
