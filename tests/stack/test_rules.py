"""The pure rules the stack schema applies: CIDRs, S3 bucket names, cron fields, image references,
look-alike keys and credential-shaped values."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.stack.cidr import parse_cidr
from infra.stack.cron import cron_problem
from infra.stack.images import pinned_reference_problem, repository_problem
from infra.stack.reader import ConfigError, ascii_skeleton, code_points, is_credential_key, looks_like_credential
from infra.stack.s3names import bucket_name_problem


@pytest.mark.parametrize("text, expected", [
    ("10.0.0.0/33", "prefix /33"),
    ("10.0.0.0/8", "prefix /8; this key takes /16 to /20"),
    ("10.0.0.0/22", "prefix /22"),
    ("10.0.0.1/16", "host bits set (the network is 10.0.0.0/16)"),
    ("10.256.0.0/16", "octet 256, above 255"),
    ("10.01.0.0/16", "leading zero"),
    ("10.0.0/16", "is not an IPv4 CIDR"),
    ("fd00::/16", "is not an IPv4 CIDR"),
])
def test_cidr_rules(text, expected):
    with pytest.raises(ConfigError, match=r"^net\.cidr: ") as err:
        parse_cidr("net.cidr", text, shortest=16, longest=20)
    assert expected in str(err.value)


@settings(max_examples=200, deadline=None)
@given(st.ip_addresses(v=4), st.integers(0, 32))
def test_a_cidr_is_taken_exactly_when_it_is_a_network(address, prefix):
    text = f"{address}/{prefix}"
    network = ipaddress.ip_network(text, strict=False)
    if str(network) == text:
        assert parse_cidr("k", text) == network
    else:
        with pytest.raises(ConfigError, match="host bits"):
            parse_cidr("k", text)


@pytest.mark.parametrize("name, expected", [
    ("ab", "is 2 characters"), ("a" * 64, "is 64 characters"), ("My-bucket", "'M'"), ("a_b-c", "'_'"),
    ("-abc", "begin and end"), ("abc.", "begin and end"), ("a..b", "two adjacent dots"),
    ("192.168.5.4", "IP address"), ("xn--abc", "prefix 'xn--'"), ("sthree-abc", "prefix 'sthree-'"),
    ("amzn-s3-demo-x", "prefix 'amzn-s3-demo-'"), ("abc-s3alias", "suffix '-s3alias'"),
    ("abc--ol-s3", "suffix '--ol-s3'"), ("abc.mrap", "suffix '.mrap'"), ("abc--x-s3", "suffix '--x-s3'"),
    ("abc--table-s3", "suffix '--table-s3'"),
])
def test_every_s3_bucket_naming_rule(name, expected):
    assert expected in (bucket_name_problem(name) or "")


def test_good_bucket_names_pass():
    for name in ("llm-fleet-prod-123456789012-us-east-1", "a.b.c", "abc", "a" * 63):
        assert bucket_name_problem(name) is None


@pytest.mark.parametrize("expr, expected", [
    ("60 * * * *", "minute field '60': 60 is outside 0-59"),
    ("0 24 * * *", "hour field '24'"), ("0 0 0 * *", "day of month field '0'"), ("0 0 32 * *", "day of month"),
    ("0 0 * 13 *", "month field '13'"), ("0 0 * * 7", "day of week field '7'"), ("*/0 * * * *", "step '0'"),
    ("0 0 * * MON-XYZ", "'XYZ' is not a number"), ("0 5-1 * * *", "runs backwards"), ("* * * *", "has 4 fields"),
    ("TZ=UTC 0 * * * *", "time zone"), ("@every-day", "not a descriptor"),
])
def test_cron_fields_out_of_range_are_named(expr, expected):
    assert expected in (cron_problem(expr) or "")


@pytest.mark.parametrize("expr", ["*/5 * * * *", "0 * * * *", "30 9-17 * * MON-FRI", "0 0 1,15 JAN-jun ?",
                                  "@hourly", "0 0 * * 0-6", "59 23 31 12 6"])
def test_good_cron_passes(expr):
    assert cron_problem(expr) is None


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 59), st.integers(0, 23), st.integers(1, 31), st.integers(1, 12), st.integers(0, 6),
       st.integers(0, 4), st.integers(0, 100))
def test_a_value_is_refused_exactly_when_it_is_out_of_its_range(minute, hour, dom, month, dow, field, bump):
    fields = [minute, hour, dom, month, dow]
    assert cron_problem(" ".join(map(str, fields))) is None
    lo, hi = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))[field]
    fields[field] = hi + 1 + bump if bump % 2 or lo == 0 else lo - 1
    assert cron_problem(" ".join(map(str, fields))) is not None


@pytest.mark.parametrize("image, problem", [
    ("vllm/vllm-openai:v0.19.0", "carries its own tag 'v0.19.0'"),
    ("vllm/vllm-openai:latest", "carries its own tag 'latest'"),
    ("vllm/vllm-openai@sha256:" + "a" * 64, "carries its own digest"),
    ("VLLM/Openai", "is not an image repository"),
])
def test_engine_image_is_a_bare_repository(image, problem):
    assert problem in (repository_problem(image) or "")
    assert repository_problem("registry.example.com:5000/team/vllm-openai") is None


@pytest.mark.parametrize("image, problem", [
    ("ghcr.io/acme/jobs", "has no tag, which means latest"), ("ghcr.io/acme/jobs:latest", "is not pinned"),
    ("ghcr.io/acme/jobs:LATEST", "is not pinned"), ("ghcr.io/acme/jobs:-x", "is not an image tag"),
    ("ghcr.io/Acme/jobs:1", "is not an image reference"),
])
def test_pinned_image_by_any_route(image, problem):
    assert problem in (pinned_reference_problem(image) or "")
    assert pinned_reference_problem("localhost:5000/jobs:0.1.0") is None
    assert pinned_reference_problem("ghcr.io/acme/jobs@sha256:" + "0" * 64) is None


def test_lookalike_keys_are_spelled_out():
    assert code_points("mахSize") == "U+0430 CYRILLIC SMALL LETTER A, U+0445 CYRILLIC SMALL LETTER HA"
    assert ascii_skeleton("mахSize") == "maxSize"
    assert ascii_skeleton("ﬁle\u200b") == "file"           # compatibility ligature, zero-width space
    assert code_points("maxSize") == ""


def test_credential_keys_and_values():
    assert all(map(is_credential_key, ("hfToken", "apiKey", "masterKey", "password", "dbPassword", "token")))
    assert not any(map(is_credential_key, ("outputTokensPerSecond", "secretsManager", "pulumiSecret", "tpm")))
    assert looks_like_credential("hf_" + "a1" * 12) and looks_like_credential("sk-live-abcdefgh12")
    assert looks_like_credential({"k": "ghp_abcdefghijkl"})
    assert not looks_like_credential("zai-org/GLM-5.1-FP8")
    assert not looks_like_credential("arn:aws:secretsmanager:us-east-1:123456789012:secret:llm-fleet/prod/hf-token")
