"""A stack file's bytes -> its `config:` mapping, or one ConfigError line: size, encoding, YAML syntax
(file:line:column and what was expected), duplicate keys, nesting depth and alias blow-up are refused
here, before any key is read. Pure; `config.load_stack_file` and `fleet render` read files only through it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from infra.stack.reader import ConfigError, key_note

MAX_BYTES = 1 << 20        # the shipped stacks are ~5 KB; a megabyte is a generated or wrong file
MAX_DEPTH = 24             # the deepest real key path is ~7 levels (pools[].schedule.windows[].days)
MAX_VALUES = 100_000       # values after aliases are expanded (a "billion laughs" file stops here)
MAX_NUMBER_DIGITS = 40     # far beyond any size; stops a million-digit integer before int() chokes on it
MERGE_TAG = "tag:yaml.org,2002:merge"


def read_stack_document(path: Path) -> dict[str, Any]:
    """The `config:` mapping of a stack file (other top-level keys such as `encryptionsalt` are Pulumi's)."""
    try:
        with path.open("rb") as file:          # read at most one byte past the limit (a pipe has no size)
            data = file.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such stack file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; give a Pulumi.<stack>.yaml file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror})") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{path}: over the {MAX_BYTES:,}-byte limit for a stack file; a stack file is a few "
                          "kilobytes of YAML (is this the right file?)")
    document = parse_yaml(data, str(path))
    if document is None:
        raise ConfigError(f"{path}: the file is empty; a stack file is a mapping with a `config:` section")
    if not isinstance(document, Mapping):
        raise ConfigError(f"{path}: the top level is {_kind(document)}; a stack file is a mapping with a "
                          "`config:` section")
    if "config" not in document:
        raise ConfigError(f"{path}: no `config:` section; put the stack's keys under `config:`")
    config = document["config"]
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise ConfigError(f"{path}: `config:` is {_kind(config)}; it must be a mapping of `namespace:key: value`")
    return dict(config)


def parse_yaml(data: bytes, name: str) -> Any:
    """UTF-8 YAML -> Python values, refusing what PyYAML would accept silently or crash on."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise ConfigError(f"{name}:{line}:{column}: byte 0x{data[err.start]:02x} is not UTF-8; save the stack "
                          "file as UTF-8 text") from None
    try:
        return _compose_and_construct(text, name)
    except yaml.MarkedYAMLError as err:
        raise ConfigError(_syntax_error(name, err)) from None
    except yaml.reader.ReaderError as err:
        line = text.count("\n", 0, err.position) + 1
        column = err.position - (text.rfind("\n", 0, err.position) + 1) + 1
        raise ConfigError(f"{name}:{line}:{column}: character U+{err.character:04X} is not allowed in YAML; "
                          "remove it") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{name}: not valid YAML: {_one_line(str(err))}") from None


def _compose_and_construct(text: str, name: str) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check(node, name, "", set(), {})
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _syntax_error(name: str, err: yaml.MarkedYAMLError) -> str:
    mark = err.problem_mark or err.context_mark
    where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
    problem = _one_line(err.problem or "not valid YAML")
    context = ""
    if err.context:
        context = f" ({_one_line(err.context)}"
        if err.context_mark is not None and err.context_mark is not mark:
            context += f" at line {err.context_mark.line + 1}, column {err.context_mark.column + 1}"
        context += ")"
    return f"{where}: YAML syntax error: {problem}{context}"


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    kind = ("true/false" if isinstance(value, bool) else "a number" if isinstance(value, int | float)
            else f"a {type(value).__name__}")
    return f"{kind} ({value!r:.40})"


class _Loader(yaml.SafeLoader):
    """SafeLoader that stops at MAX_DEPTH while composing (PyYAML's composer recurses per level) and
    refuses integers with more digits than any size needs (Python refuses to convert them anyway)."""

    _depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(
                    None, None, f"nesting deeper than {MAX_DEPTH} levels; a stack file needs fewer than 10", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node: ScalarNode) -> int:
        if len(node.value) > MAX_NUMBER_DIGITS:
            raise yaml.constructor.ConstructorError(
                None, None, f"a {len(node.value)}-digit number is not a size any key takes", node.start_mark)
        return super().construct_yaml_int(node)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def _check(node: Node, name: str, path: str, active: set[int], sizes: dict[int, int]) -> int:
    """Refuse duplicate keys (PyYAML keeps the last one without a word) and recursive or exploding
    aliases; return how many values the node expands to."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in active:
        raise ConfigError(f"{name}:{node.start_mark.line + 1}: {path or 'the document'}: an alias refers to "
                          "itself; remove the recursive alias")
    active.add(id(node))
    total = 1
    if isinstance(node, MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            if key.tag == MERGE_TAG:
                total += _check(value, name, path, active, sizes)
                continue
            label = key.value if isinstance(key, ScalarNode) else f"<{key.id} key>"
            sub = _sub(path, label)
            if isinstance(key, ScalarNode):
                ident = (key.tag, key.value)
                if ident in seen:
                    raise ConfigError(
                        f"{name}:{key.start_mark.line + 1}: {sub}: duplicate key {label!r}{key_note(label)} (first at "
                        f"line {seen[ident]}); YAML keeps only the last one, so remove one of them")
                seen[ident] = key.start_mark.line + 1
            total += _check(value, name, sub, active, sizes)
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            total += _check(item, name, f"{path}[{i}]", active, sizes)
    active.discard(id(node))
    sizes[id(node)] = total
    if total > MAX_VALUES:
        raise ConfigError(f"{name}:{node.start_mark.line + 1}: {path or 'the document'}: expands to more than "
                          f"{MAX_VALUES:,} values through aliases; write the values out")
    return total


def _sub(path: str, key: str) -> str:
    """Key paths as the rest of the errors write them: `llm-fleet.pools[0].maxSize`, `aws:region`."""
    if path == "":
        return key
    if path == "config":
        namespace, sep, rest = key.partition(":")
        return f"{namespace}.{rest}" if sep and namespace == "llm-fleet" else key
    return f"{path}.{key}"
