"""The shape of the house: stage modules never import each other, the core imports no stage, there is no
import cycle, and every rule's inputs, outputs and params are what its script passes to its stage's run()."""
from __future__ import annotations

import ast
import inspect
import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "weight_sharing"
RULES = {p.stem for p in (ROOT / "rules").glob("*.smk")} - {"common"}
# the library's modules by their name under weight_sharing: a subpackage (formats) counts as one module
MODULES = ({p.stem for p in PACKAGE.glob("*.py")} | {p.parent.name for p in PACKAGE.glob("*/__init__.py")}) - {
    "__init__"}


def module_of(path: Path) -> str:
    """The module a library file belongs to (its own name, or its subpackage's)."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_modules(path: Path, package_parts: tuple[str, ...] = ()) -> set[str]:
    """The weight_sharing modules a file imports, at any depth (function-level imports included);
    ``package_parts``: the file's package below weight_sharing (for relative imports)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package_parts[:len(package_parts) - (node.level - 1)]) if node.level > 1 else list(
                    package_parts)
                parts = base + ((node.module or "").split(".") if node.module else [])
            elif (node.module or "").startswith("weight_sharing"):
                parts = node.module.split(".")[1:]
            else:
                continue
            if parts:
                out.add(parts[0])
            else:  # from . import x / from weight_sharing import x
                out.update(a.name for a in node.names if a.name in MODULES)
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names
                       if a.name.startswith("weight_sharing.") and a.name.split(".")[1] in MODULES)
    return out & MODULES


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__init__.py" and path.parent == PACKAGE:
            continue
        package = path.relative_to(PACKAGE).parts[:-1]
        graph[module_of(path)] |= imported_modules(path, package) - {module_of(path)}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_every_stage_is_a_rule_file_a_script_and_a_module():
    for stage in RULES:
        assert (ROOT / "workflow_scripts" / f"{stage}.py").is_file(), stage
        assert stage in MODULES, stage


def test_stage_modules_import_only_the_core():
    graph = import_graph()
    bad = {m: sorted(graph[m] & RULES) for m in MODULES if graph[m] & RULES}
    assert not bad, f"modules importing a stage module (a stage imports only the core): {bad}"


def test_no_import_cycle():
    assert cycle(import_graph()) is None


def test_the_checks_find_what_they_look_for(tmp_path):
    """The parser sees module-level, function-level and package-relative imports, and the cycle finder a cycle."""
    f = tmp_path / "m.py"
    f.write_text("from .sweep import x\nimport weight_sharing.sample\ndef f():\n    from . import refine\n"
                 "    from weight_sharing.tables import CandidateSet\n")
    assert imported_modules(f) == {"sweep", "sample", "refine", "tables"}
    g = tmp_path / "n.py"
    g.write_text("from ..sharing import x\nfrom . import ExportPoint\nfrom ..formats.onnx import y\n")
    assert imported_modules(g, ("formats",)) == {"sharing", "formats"}
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def rule_names(stage: str) -> dict[str, tuple[set[str], int]]:
    """A rule file's named (and the count of unnamed) inputs, outputs and params, as snakefmt lays them out."""
    out, section = {}, None
    for line in (ROOT / "rules" / f"{stage}.smk").read_text().splitlines():
        head = re.match(r"^    (\w+):", line)
        if head:
            section = head.group(1) if head.group(1) in ("input", "output", "params") else None
            if section:
                out[section] = (set(), 0)
            continue
        if section and re.match(r"^ {8}\S", line):
            names, unnamed = out[section]
            key = re.match(r"^ {8}(\w+)=", line)
            if key:
                names.add(key.group(1))
            else:
                out[section] = (names, unnamed + 1)
    return out


class Value:
    """A stand-in for any input, output or param value: a path, a list, a dict or a number as asked."""

    def __iter__(self):
        return iter(())

    def keys(self):
        return []

    def __int__(self):
        return 0

    def __getitem__(self, key):
        return Value()


class Names:
    """A rule's inputs, outputs or params: only the declared names exist; every use is recorded."""

    def __init__(self, kind: str, names: set[str], unnamed: int):
        self._kind, self._names, self._unnamed, self.used = kind, names, unnamed, set()

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._names:
            raise AttributeError(f"the rule has no {self._kind} named {name!r}")
        self.used.add(name)
        return Value()

    def __getitem__(self, i):
        if not isinstance(i, int) or i >= self._unnamed + len(self._names):
            raise IndexError(f"the rule has no {self._kind} [{i}]")
        return Value()

    def __iter__(self):
        return iter([Value()] * self._unnamed)


@pytest.mark.parametrize("stage", sorted(RULES))
def test_rule_and_script_match_the_stage_run(stage, monkeypatch):
    """The script passes run() exactly the keywords it takes, reads only what the rule declares, and every
    declared param (but code_version, which only reruns) and input (but the checkpoint, which only orders
    the jobs) is read: a renamed parameter fails here, not in a run."""
    import importlib

    from weight_sharing import job

    declared = rule_names(stage)
    module = importlib.import_module(f"weight_sharing.{stage}")
    real_run, calls = module.run, []
    monkeypatch.setattr(module, "run", lambda **kw: calls.append(kw))
    monkeypatch.setattr(job, "setup", lambda *a, **kw: None)
    fake = type("Snakemake", (), {})()
    fake.input, fake.output, fake.params = (Names(k, *declared.get(k, (set(), 0)))
                                            for k in ("input", "output", "params"))
    fake.log, fake.threads = ["log"], 1
    fake.wildcards = type("Wildcards", (), {"net": "net", "shard": "0", "chunk": "part000"})()
    runpy.run_path(str(ROOT / "workflow_scripts" / f"{stage}.py"), init_globals={"snakemake": fake})
    assert len(calls) == 1, f"workflow_scripts/{stage}.py must call {stage}.run once"
    inspect.signature(real_run).bind(**calls[0])
    unread = {"params": declared.get("params", (set(), 0))[0] - fake.params.used - {"code_version"},
              "input": declared.get("input", (set(), 0))[0] - fake.input.used - {"checkpoint"}}
    assert not any(unread.values()), f"rules/{stage}.smk declares what its script never reads: {unread}"


def test_the_rule_check_catches_a_renamed_param(monkeypatch):
    """A script reading a param its rule does not declare fails, and so does a keyword run() does not take."""
    names = Names("params", {"sample"}, 0)
    with pytest.raises(AttributeError, match="no params named 'samples'"):
        names.samples  # noqa: B018
    from weight_sharing import sample

    with pytest.raises(TypeError):
        inspect.signature(sample.run).bind(spec=None, candidates="c", layers="l", baseline="b", samples={},
                                           shard=0, out="o")
