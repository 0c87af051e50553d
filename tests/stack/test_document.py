"""The stack file as bytes: one ConfigError line for whatever PyYAML would accept silently or crash on."""

from __future__ import annotations

import contextlib
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.stack.config import load_stack_file
from infra.stack.document import MAX_BYTES, MAX_DEPTH, parse_yaml
from infra.stack.reader import ConfigError
from tests.conftest import STACKS

PROD = (STACKS / "Pulumi.prod.yaml").read_text()


def refused(tmp_path, content: str | bytes) -> str:
    path = tmp_path / "Pulumi.t.yaml"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(ConfigError) as err:
        load_stack_file(path)
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    return message.replace(str(path), "FILE")


def test_syntax_error_names_file_line_column_and_what_was_expected(tmp_path):
    text = PROD.replace("maxSize: 4}", "maxSize: 4", 1)     # unclosed flow mapping (systemNodes)
    message = refused(tmp_path, text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "systemNodes" in t)
    assert message.startswith("FILE:") and "YAML syntax error: expected ',' or '}'" in message
    assert f"at line {line}, column" in message
    assert refused(tmp_path, "config:\n  a: b\n c: d\n").startswith("FILE:3:2: YAML syntax error:")


@pytest.mark.parametrize("text, where", [
    (PROD.replace("  llm-fleet:environment: prod\n", "  llm-fleet:environment: prod\n  llm-fleet:environment: dev\n"),
     "llm-fleet.environment: duplicate key 'llm-fleet:environment'"),
    (re.sub(r"(\n      maxSize: [^\n]*\n)", "\\1      maxSize: 8\n", PROD, count=1),     # the first pool's
     "llm-fleet.pools[0].maxSize: duplicate key"),
    (PROD.replace("offSize: 0\n", "offSize: 0\n        offSize: 2\n"),
     "llm-fleet.pools[2].schedule.offSize: duplicate"),
    (PROD.replace("{days: mon-fri, start: \"09:00\"", "{days: mon-fri, days: sat, start: \"09:00\""),
     "llm-fleet.pools[2].schedule.windows[0].days: duplicate key"),
])
def test_duplicate_keys_anywhere_are_refused_with_path_and_lines(tmp_path, text, where):
    message = refused(tmp_path, text)
    assert where in message and "(first at line" in message and "keeps only the last one" in message


def test_non_utf8_bytes_are_refused_with_line_and_column(tmp_path):
    data = PROD.encode().replace(b"h200-base", b"h200-b\xe4se", 1)
    line = PROD[:PROD.index("h200-base")].count("\n") + 1
    assert refused(tmp_path, data).startswith(f"FILE:{line}:")
    assert "byte 0xe4 is not UTF-8" in refused(tmp_path, data)


@pytest.mark.parametrize("content, expected", [
    ("", "the file is empty"),
    ("# only a comment\n", "the file is empty"),
    ("- config\n", "the top level is a list"),
    ("just a string\n", "the top level is a string"),
    ("42\n", "the top level is a number (42)"),
    ("encryptionsalt: abc\n", "no `config:` section"),
    ("config: [a]\n", "`config:` is a list"),
    ("config: {}\n---\nconfig: {}\n", "expected a single document"),
    ("config:\n  a: \x00\n", "FILE:2:6: character U+0000 is not allowed"),
    ("config:\n  a: !!python/object:os.system x\n", "could not determine a constructor"),
    ("config:\n  a: " + "9" * 5000 + "\n", "5000-digit number"),
])
def test_what_is_not_a_stack_document(tmp_path, content, expected):
    assert expected in refused(tmp_path, content)


def test_nesting_depth_is_bounded(tmp_path):
    deep = "config:\n  llm-fleet:x: " + "[" * 100_000 + "]" * 100_000 + "\n"
    assert f"nesting deeper than {MAX_DEPTH} levels" in refused(tmp_path, deep)
    nested = "config:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(MAX_DEPTH + 2))
    assert "nesting deeper" in refused(tmp_path, nested)


def test_huge_file_is_refused_before_it_is_parsed(tmp_path):
    big = PROD + "#" + "x" * MAX_BYTES + "\n"
    assert f"over the {MAX_BYTES:,}-byte limit" in refused(tmp_path, big)


def test_alias_bombs_and_recursive_aliases_are_refused(tmp_path):
    bomb = "config:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"  a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]\n"
        for i in range(1, 9))
    assert "through aliases" in refused(tmp_path, bomb)
    assert "an alias refers to itself" in refused(tmp_path, "config:\n  a: &x [1, *x]\n")


def test_a_valid_alias_still_works(tmp_path, stack_values):
    text = PROD.replace("      diskGB: 300\n", "      diskGB: &disk 300\n", 1).replace(
        "      diskGB: 300\n", "      diskGB: *disk\n")
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(text)
    assert {p.disk_gb for p in load_stack_file(path).pools[:3]} == {300}


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                 st.lists(st.sampled_from(["config:", "\n", "  ", "- ", "a: ", "[", "]", "{", "}", "&a ", "*a", "!!",
                                           ".nan", "---", "? ", ",", '"', "'", "#", "\t", "llm-fleet:pools: "]),
                          max_size=40).map(lambda parts: "".join(parts).encode())))
def test_any_bytes_are_a_stack_config_or_one_config_error_line(data):
    """Nothing but ConfigError (one line) comes out of reading any bytes as a stack file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Pulumi.t.yaml"
        path.write_bytes(data)
        with pytest.raises(ConfigError) as err:     # none of these is a complete stack
            load_stack_file(path)
    assert "\n" not in str(err.value)
    with contextlib.suppress(ConfigError):
        parse_yaml(data, "f")


def test_a_file_with_no_end_is_read_only_up_to_the_limit(tmp_path):
    link = tmp_path / "Pulumi.zero.yaml"
    link.symlink_to("/dev/zero")
    with pytest.raises(ConfigError, match="over the 1,048,576-byte limit"):
        load_stack_file(link)
