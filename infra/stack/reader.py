"""A strict reader over the parsed stack file: every error names the key path, the value and what works.

Pure (no Pulumi). `config.py` builds the StackConfig with it; nothing else reads raw config. Numbers must
be finite and fit the 32-bit integers the cloud APIs take; a key that is not ASCII is named with its code
points; a value under a credential's key, or shaped like a credential, is never echoed back.
"""

from __future__ import annotations

import difflib
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# No quantity in a stack file comes near this (dollars, GB, Gbps, seconds); past it, sums and products
# over a month of node-hours stop being finite numbers (`fleet plan --json` would print Infinity).
FLOAT_MAX = 1e12
# A key is a credential when one of its words is one of these (hfToken, apiKey, masterKey, dbPassword).
SECRET_WORDS = frozenset({"token", "password", "passphrase", "secret", "credential", "credentials"})
SECRET_PAIRS = frozenset({"apikey", "masterkey", "accesskey", "privatekey", "secretkey", "authkey"})
REFERENCE_KEYS = frozenset({"secretsManager", "pulumiSecret"})   # where a credential is, not what it is
HIDDEN = "<value hidden: it may be a credential>"
# Shapes of the credentials a stack file is most likely to be pasted with (Hugging Face, OpenAI-style
# and provider keys, GitHub, Slack, AWS access keys, JWTs, PEM), plus any long letter-digit run.
_CREDENTIAL = re.compile(
    r"hf_\w{8,}|sk-[\w-]{8,}|gh[pousr]_\w{8,}|github_pat_\w{8,}|xox[abprs]-[\w-]{8,}|A[KS]IA[0-9A-Z]{12,}"
    r"|eyJ[\w-]{8,}\.[\w-]{8,}|-----BEGIN|(?=[\w+=-]*\d)(?=[\w+=-]*[A-Za-z])[\w+=-]{32,}")
# Look-alike letters people paste into keys, mapped to the ASCII letter they imitate.
_CONFUSABLE = str.maketrans("аеорсухіјѕԁһӏАВЕКМНОРСТХαοιкνρτυϲ", "aeopcyxijsdhlABEKMHOPCTXaoikvptuc")


class ConfigError(ValueError):
    """A stack file that cannot be built: the message names the key path and what would work."""


def is_credential_key(key: Any) -> bool:
    """hfToken, apiKey, masterKey, password, ... (not secretsManager/pulumiSecret, which say where it is)."""
    text = str(key)
    if text in REFERENCE_KEYS:
        return False
    words = [w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", text)]
    return bool(SECRET_WORDS & set(words)) or any(a + b in SECRET_PAIRS for a, b in zip(words, words[1:], strict=False))


def looks_like_credential(value: Any) -> bool:
    """A value, or anything inside it, shaped like a credential."""
    return _CREDENTIAL.search(value if isinstance(value, str) else repr(value)) is not None


def _show(value: Any, hidden: bool = False) -> str:
    if hidden or looks_like_credential(value):
        return HIDDEN
    if isinstance(value, str) and len(value) > 80:
        return repr(value[:77] + "...")
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def code_points(text: str) -> str:
    """`U+0445 CYRILLIC SMALL LETTER HA, ...` for every character outside printable ASCII, or ''."""
    odd = dict.fromkeys(c for c in text if not (" " <= c <= "~"))
    return ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, 'unnamed character')}" for c in odd)


def key_note(key: Any) -> str:
    """` (contains U+0445 CYRILLIC SMALL LETTER HA)` for a key with look-alike characters, else ''."""
    points = code_points(str(key))
    return f" (contains {points})" if points else ""


def ascii_skeleton(text: str) -> str:
    """What a key with look-alike letters imitates: NFKD, Cyrillic/Greek look-alikes, marks and
    invisible characters dropped."""
    text = unicodedata.normalize("NFKD", text).translate(_CONFUSABLE)
    return "".join(c for c in text if not unicodedata.category(c).startswith(("M", "C", "Z")))


def _finite(value: Any) -> bool:
    return not (isinstance(value, float) and not math.isfinite(value))


class Node:
    """A mapping at a key path; `done()` refuses the keys nobody asked for (typos are not ignored).
    Under a credential's key (`hidden`) no value is ever shown in an error."""

    def __init__(self, data: Any, path: str, hidden: bool = False, *, _list: bool = False):
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {_show(data, hidden)}")
        self.data = data
        self.path = path
        self.hidden = hidden
        self._list = _list
        self._seen: set[str] = set()

    def sub(self, key: str) -> str:
        if self._list:
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def show(self, value: Any) -> str:
        return _show(value, self.hidden)

    def has(self, key: str) -> bool:
        self._seen.add(key)
        if key not in self.data:
            self._refuse_lookalike(key)
        return key in self.data and self.data[key] is not None

    def raw(self, key: str, default: Any = None) -> Any:
        self._seen.add(key)
        if key not in self.data:
            self._refuse_lookalike(key)
        value = self.data.get(key)
        return default if value is None else value

    def _refuse_lookalike(self, key: str) -> None:
        """A key that is missing because it was written with look-alike letters is named as found, not
        reported missing or silently defaulted."""
        for other in self.data:
            if isinstance(other, str) and code_points(other) and ascii_skeleton(other) == key:
                raise self._unknown(other, [key])

    def req(self, key: str) -> Any:
        self._seen.add(key)
        if key not in self.data or self.data[key] is None:
            self._refuse_lookalike(key)
            others = [str(k) for k in self.data if str(k) != key]
            close = difflib.get_close_matches(key, others, n=1, cutoff=0.8)
            raise ConfigError(f"{self.sub(key)}: required key is missing"
                              + (f" (is {close[0]!r} a typo of it?)" if close else ""))
        return self.data[key]

    def node(self, key: str, required: bool = False) -> Node:
        value = self.req(key) if required else self.raw(key, {})
        return Node(value, self.sub(key), self.hidden or is_credential_key(key))

    def str(self, key: str, default: str | None = None, *, required: bool = False,
            choices: Sequence[str] | None = None, pattern: str | None = None, hint: str = "") -> str | None:
        value = self.req(key) if required else self.raw(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float) or not _finite(value):
            raise ConfigError(f"{self.sub(key)}: expected a string, got {self.show(value)}")
        value = str(value)
        note = "" if self.hidden else key_note(value)
        if choices is not None and value not in choices:
            raise ConfigError(f"{self.sub(key)}: {self.show(value)}{note} is not allowed; use one of: "
                              f"{', '.join(choices)}" + _did_you_mean(value, choices))
        if pattern is not None and not re.fullmatch(pattern, value):
            raise ConfigError(f"{self.sub(key)}: {self.show(value)}{note} is not valid{'; ' + hint if hint else ''}")
        return value

    def int(self, key: str, default: int | None = None, *, required: bool = False,
            minimum: int | None = None, maximum: int | None = None) -> int | None:
        """A whole number; never beyond a 32-bit integer, the most the cloud APIs take (EKS sizes)."""
        value = self.req(key) if required else self.raw(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{self.sub(key)}: expected a whole number, got {self.show(value)}")
        _bounds(self.sub(key), value, INT32_MIN if minimum is None else minimum,
                INT32_MAX if maximum is None else min(maximum, INT32_MAX))
        return value

    def float(self, key: str, default: float | None = None, *, required: bool = False,
              minimum: float | None = None, maximum: float | None = None) -> float | None:
        value = self.req(key) if required else self.raw(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{self.sub(key)}: expected a number, got {self.show(value)}")
        if not _finite(value):
            raise ConfigError(f"{self.sub(key)}: {value} is not a finite number; give a number"
                              + (f" between {minimum} and {maximum}" if minimum is not None and maximum is not None
                                 else f" of at least {minimum}" if minimum is not None else ""))
        _bounds(self.sub(key), value, minimum, FLOAT_MAX if maximum is None else maximum)
        return float(value)

    def bool(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.sub(key)}: expected true or false, got {self.show(value)}")
        return value

    def strs(self, key: str, default: Iterable[str] = (), *, choices: Sequence[str] | None = None,
             pattern: str | None = None, hint: str = "", unique: bool = False) -> tuple[str, ...]:
        """A list of strings; `unique` refuses an entry listed twice (a subnet, a CIDR, an AZ)."""
        value = self.raw(key, None)
        if value is None:
            return tuple(default)
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ConfigError(f"{self.sub(key)}: expected a list of strings, got {self.show(value)}")
        holder = Node({str(i): v for i, v in enumerate(value)}, self.sub(key), self.hidden, _list=True)
        out = tuple(holder.str(str(i), required=True, choices=choices, pattern=pattern, hint=hint)
                    for i in range(len(value)))
        if unique:
            for i, item in enumerate(out):
                if item in out[:i]:
                    raise ConfigError(f"{holder.sub(str(i))}: {self.show(item)} is listed twice "
                                      f"(also at [{out.index(item)}]); list each once")
        return out

    def items(self, key: str) -> list[Node]:
        value = self.raw(key, [])
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ConfigError(f"{self.sub(key)}: expected a list, got {self.show(value)}")
        return [Node(v, f"{self.sub(key)}[{i}]", self.hidden) for i, v in enumerate(value)]

    def done(self, allowed_extra: Iterable[str] = ()) -> None:
        known = sorted(self._seen | set(allowed_extra))
        for key in self.data:
            if str(key) not in known:
                raise self._unknown(str(key), known)

    def _unknown(self, key: str, known: Sequence[str]) -> ConfigError:
        points = code_points(key)
        if points:
            close = difflib.get_close_matches(ascii_skeleton(key), known, n=1, cutoff=0.7)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys here: {', '.join(known)}"
            return ConfigError(f"{self.path}: unknown key {key!r} (contains {points}{hint})")
        return ConfigError(f"{self.sub(key)}: unknown key; known keys here: {', '.join(known)}"
                           + _did_you_mean(key, known))


def _bounds(path: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise ConfigError(f"{path}: {value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        why = (" (a 32-bit integer, the most the cloud APIs accept)" if maximum == INT32_MAX else
               " (no quantity in a stack file is that large)" if maximum == FLOAT_MAX else "")
        raise ConfigError(f"{path}: {value} is above the maximum {maximum}{why}")


def _did_you_mean(value: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(value, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def refuse_clear_text_secrets(data: Any, path: str) -> None:
    """A key that names a credential must hold a reference, never the credential itself; the refusal
    names the key and never repeats the value."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            sub = f"{path}.{key}" if path else str(key)
            if is_credential_key(key) and value is not None and not isinstance(value, Mapping | list):
                raise ConfigError(
                    f"{sub}: a clear-text credential is not allowed in a stack file (value not shown); use "
                    "{secretsManager: <secret ARN>} or {pulumiSecret: <key>} set with "
                    "`pulumi config set --secret <key> <value>`")
            refuse_clear_text_secrets(value, sub)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            refuse_clear_text_secrets(value, f"{path}[{i}]")
