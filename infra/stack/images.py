"""Container image references as the stack file gives them, checked with the grammar registries use
(distribution/reference): `[registry[:port]/]path` in lowercase components, then `:tag` (at most 128
of `[A-Za-z0-9_.-]`, not starting with `.` or `-`) or `@sha256:<64 hex>`. `latest` is never a pin, by
any route: a `:latest` tag, a missing tag, or a tag hidden inside a repository that also has a version. Pure."""

from __future__ import annotations

import re

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:(?:localhost|[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+)(?::\d+)?/|[a-zA-Z0-9-]+:\d+/)"
REPOSITORY = rf"{_HOST}?{_COMPONENT}(?:/{_COMPONENT})*"
TAG = r"[\w][\w.-]{0,127}"
DIGEST = r"sha256:[0-9a-f]{64}"


def repository_problem(text: str) -> str | None:
    """Why `text` is not a bare repository (no tag, no digest), or None."""
    if re.fullmatch(REPOSITORY, text):
        return None
    repo, tag, digest = split_reference(text)
    if repo is not None and (tag or digest):
        return ("carries its own " + ("digest" if digest else f"tag {tag!r}") +
                "; give the repository alone and the tag as the version")
    return "is not an image repository (lowercase registry/path, e.g. vllm/vllm-openai)"


def tag_problem(tag: str) -> str | None:
    if tag.lower() == "latest":
        return "is not pinned (latest moves); give a release tag or a digest"
    if not re.fullmatch(TAG, tag):
        return "is not an image tag (letters, digits, _ . -, at most 128, not starting with . or -)"
    return None


def pinned_reference_problem(text: str) -> str | None:
    """Why `text` is not an image pinned by tag or digest, or None."""
    repo, tag, digest = split_reference(text)
    if repo is None:
        return "is not an image reference (registry/path:tag or registry/path@sha256:<digest>)"
    if digest:
        return None
    if tag is None:
        return "has no tag, which means latest; pin the image by tag or digest"
    return tag_problem(tag)


def split_reference(text: str) -> tuple[str | None, str | None, str | None]:
    """(repository, tag, digest) or (None, None, None) when it does not parse."""
    match = re.fullmatch(rf"({REPOSITORY})(?::([^@/:]+))?(?:@({DIGEST}))?", text)
    if not match:
        return None, None, None
    return match.group(1), match.group(2), match.group(3)
