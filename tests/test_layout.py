"""The tree shows the architecture: layers import only downwards, pure layers import no cloud SDK,
no import cycle anywhere, no module past the 400-line ceiling. Read from the source (ast), so a lazy
import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("infra", "scripts")
PURE = ("infra.stack", "infra.planning")
CLOUD_SDKS = ("pulumi", "pulumi_aws", "pulumi_kubernetes", "boto3", "botocore")
# each layer may import itself and the layers listed for it, nothing else of ours
ALLOWED = {
    "infra.stack": ("infra.stack",),
    "infra.planning": ("infra.stack", "infra.planning"),
    "infra.aws": ("infra.stack", "infra.planning", "infra.aws", "infra.wiring", "infra.runtime"),
    "infra.serving": ("infra.stack", "infra.planning", "infra.serving", "infra.wiring", "infra.runtime"),
}
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module this file imports (ours resolved to the module, others by their top-level name)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:      # `from infra.stack import names` imports the module names
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return found


def graph() -> dict[str, set[str]]:
    modules = sources()
    return {name: {m for m in imports(path, modules) if m in modules}
            for name, path in modules.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_sees_a_cycle_and_only_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_under_infra_or_scripts():
    assert find_cycle(graph()) is None


@pytest.mark.parametrize("layer", PURE)
def test_pure_layers_import_no_cloud_sdk(layer):
    modules = sources()
    offenders = {name: sorted(m for m in imports(path, modules) if m.split(".")[0] in CLOUD_SDKS)
                 for name, path in modules.items() if name == layer or name.startswith(layer + ".")}
    assert not {k: v for k, v in offenders.items() if v}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below(layer):
    edges = graph()
    ours = ("infra", "scripts")
    bad = {}
    for name, deps in edges.items():
        if name != layer and not name.startswith(layer + "."):
            continue
        wrong = sorted(d for d in deps if d.split(".")[0] in ours
                       and not any(d == a or d.startswith(a + ".") for a in ALLOWED[layer]))
        if wrong:
            bad[name] = wrong
    assert not bad


def test_no_module_over_the_line_ceiling():
    """Every Python file we ship or test with, the policy pack and the tests included."""
    files = [p for top in (*PACKAGES, "policy", "tests") for p in (REPO / top).rglob("*.py")]
    long = {str(p.relative_to(REPO)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long
