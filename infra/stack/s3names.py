"""S3 general purpose bucket names, against every naming rule S3 enforces (Amazon S3 user guide,
"General purpose bucket naming rules", read 2026-08): 3-63 characters; lowercase letters, digits, dots
and hyphens; a letter or digit first and last; no two adjacent dots; not an IP address; not the
reserved prefixes xn--, sthree-, amzn-s3-demo- nor the reserved suffixes -s3alias, --ol-s3, .mrap,
--x-s3, --table-s3. Pure."""

from __future__ import annotations

import re

RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def bucket_name_problem(name: str) -> str | None:
    """Why S3 would refuse this bucket name, or None."""
    if not 3 <= len(name) <= 63:
        return f"is {len(name)} characters; S3 takes 3 to 63"
    bad = sorted({c for c in name if not re.fullmatch(r"[a-z0-9.-]", c)})
    if bad:
        return f"has {', '.join(repr(c) for c in bad)}; S3 takes lowercase letters, digits, dots and hyphens"
    if not (name[0].isalnum() and name[-1].isalnum()):
        return "must begin and end with a lowercase letter or a digit"
    if ".." in name:
        return "has two adjacent dots"
    if re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", name):
        return "is formatted as an IP address"
    for prefix in RESERVED_PREFIXES:
        if name.startswith(prefix):
            return f"starts with the reserved prefix {prefix!r}"
    for suffix in RESERVED_SUFFIXES:
        if name.endswith(suffix):
            return f"ends with the reserved suffix {suffix!r}"
    return None
