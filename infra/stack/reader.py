"""A strict reader over the parsed stack file: every error names the key path, the value and what works.

Pure (no Pulumi). `config.py` builds the StackConfig with it; nothing else reads raw config.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

SECRET_KEY_WORDS = ("apikey", "token", "password", "secret", "masterkey", "passphrase")


class ConfigError(ValueError):
    """A stack file that cannot be built: the message names the key path and what would work."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Node:
    """A mapping at a key path; `done()` refuses the keys nobody asked for (typos are not ignored)."""

    def __init__(self, data: Any, path: str):
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {_show(data)}")
        self.data = data
        self.path = path
        self._seen: set[str] = set()

    def sub(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        self._seen.add(key)
        return key in self.data and self.data[key] is not None

    def raw(self, key: str, default: Any = None) -> Any:
        self._seen.add(key)
        value = self.data.get(key)
        return default if value is None else value

    def req(self, key: str) -> Any:
        self._seen.add(key)
        if key not in self.data or self.data[key] is None:
            raise ConfigError(f"{self.sub(key)}: required key is missing")
        return self.data[key]

    def node(self, key: str, required: bool = False) -> Node:
        value = self.req(key) if required else self.raw(key, {})
        return Node(value, self.sub(key))

    def str(self, key: str, default: str | None = None, *, required: bool = False,
            choices: Sequence[str] | None = None, pattern: str | None = None, hint: str = "") -> str | None:
        value = self.req(key) if required else self.raw(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(f"{self.sub(key)}: expected a string, got {_show(value)}")
        value = str(value)
        if choices is not None and value not in choices:
            raise ConfigError(f"{self.sub(key)}: {_show(value)} is not allowed; use one of: {', '.join(choices)}"
                              + _did_you_mean(value, choices))
        if pattern is not None and not re.fullmatch(pattern, value):
            raise ConfigError(f"{self.sub(key)}: {_show(value)} is not valid{'; ' + hint if hint else ''}")
        return value

    def int(self, key: str, default: int | None = None, *, required: bool = False,
            minimum: int | None = None, maximum: int | None = None) -> int | None:
        value = self.req(key) if required else self.raw(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{self.sub(key)}: expected a whole number, got {_show(value)}")
        _bounds(self.sub(key), value, minimum, maximum)
        return value

    def float(self, key: str, default: float | None = None, *, required: bool = False,
              minimum: float | None = None, maximum: float | None = None) -> float | None:
        value = self.req(key) if required else self.raw(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{self.sub(key)}: expected a number, got {_show(value)}")
        _bounds(self.sub(key), value, minimum, maximum)
        return float(value)

    def bool(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.sub(key)}: expected true or false, got {_show(value)}")
        return value

    def strs(self, key: str, default: Iterable[str] = (), *, choices: Sequence[str] | None = None,
             pattern: str | None = None, hint: str = "") -> tuple[str, ...]:
        value = self.raw(key, None)
        if value is None:
            return tuple(default)
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ConfigError(f"{self.sub(key)}: expected a list of strings, got {_show(value)}")
        holder = Node({str(i): v for i, v in enumerate(value)}, self.sub(key))
        return tuple(holder.str(str(i), required=True, choices=choices, pattern=pattern, hint=hint)
                     for i in range(len(value)))

    def items(self, key: str) -> list[Node]:
        value = self.raw(key, [])
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ConfigError(f"{self.sub(key)}: expected a list, got {_show(value)}")
        return [Node(v, f"{self.sub(key)}[{i}]") for i, v in enumerate(value)]

    def done(self, allowed_extra: Iterable[str] = ()) -> None:
        known = self._seen | set(allowed_extra)
        for key in self.data:
            if key not in known:
                raise ConfigError(f"{self.sub(str(key))}: unknown key; known keys here: "
                                  f"{', '.join(sorted(known))}" + _did_you_mean(str(key), sorted(known)))


def _bounds(path: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise ConfigError(f"{path}: {value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{path}: {value} is above the maximum {maximum}")


def _did_you_mean(value: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(value, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def refuse_clear_text_secrets(data: Any, path: str) -> None:
    """A key that names a credential must hold a reference, never the credential itself."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            sub = f"{path}.{key}" if path else str(key)
            if isinstance(value, str) and str(key).lower().replace("_", "") in SECRET_KEY_WORDS:
                raise ConfigError(
                    f"{sub}: a clear-text credential is not allowed in a stack file; use "
                    "{secretsManager: <secret ARN>} or {pulumiSecret: <key>} set with "
                    "`pulumi config set --secret <key> <value>`")
            refuse_clear_text_secrets(value, sub)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            refuse_clear_text_secrets(value, f"{path}[{i}]")
