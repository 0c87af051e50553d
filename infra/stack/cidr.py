"""IPv4 CIDRs as the stack file gives them: four octets 0-255 without leading zeros, a prefix length
in the range the key takes, no host bits (AWS and Kubernetes refuse `10.0.0.1/16` or read it as
something else). Pure; errors name the key path, the value and the network that was probably meant."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from infra.stack.reader import ConfigError

_SHAPE = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})/(\d{1,2})")


def parse_cidr(path: str, text: str, *, shortest: int = 0, longest: int = 32,
               example: str = "10.0.0.0/16") -> ipaddress.IPv4Network:
    match = _SHAPE.fullmatch(text)
    if not match:
        raise ConfigError(f"{path}: {text!r} is not an IPv4 CIDR; write a.b.c.d/n, e.g. {example}")
    for octet in match.groups()[:4]:
        if int(octet) > 255:
            raise ConfigError(f"{path}: {text!r} has the octet {octet}, above 255; e.g. {example}")
        if len(octet) > 1 and octet.startswith("0"):
            raise ConfigError(f"{path}: {text!r} has the octet {octet!r} with a leading zero; write {int(octet)}")
    prefix = int(match.group(5))
    if not shortest <= prefix <= longest:
        raise ConfigError(f"{path}: {text!r} has the prefix /{prefix}; this key takes /{shortest} to /{longest}, "
                          f"e.g. {example}")
    network = ipaddress.IPv4Network(text, strict=False)
    if str(network) != text:
        raise ConfigError(f"{path}: {text!r} has host bits set (the network is {network}); write {network}")
    return network


def parse_cidrs(path: str, texts: Iterable[str], **kwargs) -> tuple[ipaddress.IPv4Network, ...]:
    return tuple(parse_cidr(f"{path}[{i}]", t, **kwargs) for i, t in enumerate(texts))


def refuse_overlap(path: str, network: ipaddress.IPv4Network, other_path: str,
                   other: ipaddress.IPv4Network, why: str) -> None:
    if network.overlaps(other):
        raise ConfigError(f"{path}: {network} overlaps {other_path} {other}; {why}")
