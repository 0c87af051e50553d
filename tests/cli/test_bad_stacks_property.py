"""Property: any one mutation of a shipped stack file is either accepted by `fleet plan` or refused with
exit 2, exactly one line on stderr, no traceback and nothing on stdout; `fleet render` refuses exactly
the files plan refuses, with the same line (and renders the ones it accepts). Both CLIs run in-process."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scripts.fleet import main
from tests.conftest import STACKS

STACK_NAMES = tuple(sorted(p.name[len("Pulumi."):-len(".yaml")] for p in STACKS.glob("Pulumi.*.yaml")))
TEXTS = {name: (STACKS / f"Pulumi.{name}.yaml").read_text() for name in STACK_NAMES}
NUMBERS = (math.nan, math.inf, -math.inf, 1e308, -1, -(2**31) - 1, 2**31, 2**63, 10**30, 0, 0.5)
TYPES = ("x", 7, 1.5, True, [], {}, ["x"], {"k": 1}, "", None)
LOOKALIKES = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "i": "і", "y": "у"}
# FLEET_FUZZ_SCALE=20 runs twenty times the examples (a longer hunt before a release)
SCALE = int(os.environ.get("FLEET_FUZZ_SCALE", "1"))
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:          # argparse
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def paths(value, prefix=()):
    """Every (container path, key-or-index) in the parsed config."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield prefix, key
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield prefix, i
            yield from paths(item, (*prefix, i))


def at(root, prefix):
    for step in prefix:
        root = root[step]
    return root


@st.composite
def mutated(draw) -> tuple[str, bytes, str]:
    """(stack name, file bytes, what was done)."""
    name = draw(st.sampled_from(STACK_NAMES))
    text = TEXTS[name]
    doc = yaml.safe_load(text)
    op = draw(st.sampled_from(("drop", "type", "number", "lookalike", "duplicate", "bytes")))
    if op == "bytes":
        data = text.encode()
        start = draw(st.integers(0, len(data) - 1))
        junk = draw(st.binary(min_size=1, max_size=8))
        return name, data[:start] + junk + data[start + draw(st.integers(0, 8)):], f"bytes at {start}: {junk!r}"
    if op == "duplicate":
        lines = text.splitlines()
        keyed = [i for i, line in enumerate(lines) if re.match(r"^\s*(- )?[\w.:-]+:( |$)", line)
                 and not line.lstrip().startswith("#")]
        i = draw(st.sampled_from(keyed))
        match = re.match(r"^(\s*)(- )?(.*)$", lines[i])
        copy = match.group(1) + ("  " if match.group(2) else "") + match.group(3)
        return name, "\n".join([*lines[:i + 1], copy, *lines[i + 1:]]).encode(), f"duplicate line {i + 1}"
    prefix, key = draw(st.sampled_from(list(paths(doc["config"]))))
    parent = at(doc["config"], prefix)
    where = "/".join(map(str, (*prefix, key)))
    if op == "drop":
        del parent[key]
    elif op == "type":
        parent[key] = draw(st.sampled_from(TYPES))
    elif op == "number":
        parent[key] = draw(st.sampled_from(NUMBERS))
    else:
        if not isinstance(key, str) or not any(c in LOOKALIKES for c in key):
            parent[key] = draw(st.sampled_from(NUMBERS))
            op = "number"
        else:
            i = next(i for i, c in enumerate(key) if c in LOOKALIKES)
            parent[key[:i] + LOOKALIKES[key[i]] + key[i + 1:]] = parent.pop(key)
    return name, yaml.safe_dump(doc, allow_unicode=True, sort_keys=False).encode(), f"{op} {where}"


def refusal(code: int, out: str, err: str, command: str) -> str:
    assert code == 2, (code, err)
    assert out == "", out
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fleet {command}: "), err
    assert "Traceback" not in err and "Exception ignored" not in err
    return lines[0].removeprefix(f"fleet {command}: ")


def strict_json(text: str):
    def refuse(constant):
        raise AssertionError(f"plan --json printed {constant}, which is not JSON")
    return json.loads(text, parse_constant=refuse)


@settings(max_examples=90 * SCALE, **SETTINGS)
@given(case=mutated())
def test_plan_accepts_or_refuses_in_one_line_and_render_agrees(tmp_path_factory, case):
    name, data, what = case
    path = tmp_path_factory.mktemp("m") / f"Pulumi.{name}.yaml"
    path.write_bytes(data)
    code, out, err = run(["plan", "--stack-file", str(path), "--json"])
    if code == 0:
        assert err == ""
        strict_json(out)
        return
    message = refusal(code, out, err, "plan")
    code, out, err = run(["render", "--stack-file", str(path), "--json"])
    assert refusal(code, out, err, "render") == message, what


@settings(max_examples=60 * SCALE, **SETTINGS)
@given(case=mutated().filter(lambda c: not c[2].startswith(("drop", "bytes", "type"))))
def test_non_finite_numbers_lookalikes_and_duplicates_are_always_refused(tmp_path_factory, case):
    """NaN and infinities (under any key, string keys included), look-alike keys and duplicate keys
    never pass; other numbers may be fine where they are (0 replicas, "-1" as a string)."""
    name, data, what = case
    path = tmp_path_factory.mktemp("m") / f"Pulumi.{name}.yaml"
    path.write_bytes(data)
    code, out, err = run(["plan", "--stack-file", str(path)])
    if what.startswith("number") and code == 0:
        assert not _has_non_finite(yaml.safe_load(data.decode())), what
        return
    refusal(code, out, err, "plan")


def _has_non_finite(value) -> bool:
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    return isinstance(value, float) and not math.isfinite(value)


@settings(max_examples=4 * SCALE, **SETTINGS)
@given(case=mutated().filter(lambda c: c[2].startswith(("drop", "type"))))
def test_what_plan_accepts_render_renders(tmp_path_factory, case):
    """Nothing is refused only at render: a file plan accepts renders (slow, so few examples)."""
    name, data, what = case
    path = tmp_path_factory.mktemp("m") / f"Pulumi.{name}.yaml"
    path.write_bytes(data)
    if run(["plan", "--stack-file", str(path)])[0] != 0:
        return
    code, out, err = run(["render", "--stack-file", str(path), "--json"])
    assert code == 0 and err == "", (what, err)
    assert json.loads(out)
