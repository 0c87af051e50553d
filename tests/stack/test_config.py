"""The stack-file schema: shipped stacks parse, and every bad input is refused with key path + way out."""

from __future__ import annotations

import pytest

from infra.stack.config import load_stack_file, parse_config
from infra.stack.reader import ConfigError
from tests.conftest import SHIPPED, STACKS


def parse(values, secret_keys=()):
    return parse_config(values, "test", secret_keys=set(secret_keys))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_stacks_parse(name):
    cfg = load_stack_file(STACKS / f"Pulumi.{name}.yaml")
    assert cfg.stack == name and cfg.environment == name
    assert cfg.models and cfg.pools
    for model in cfg.models:
        for placement in model.placements:
            cfg.pool(placement.pool)          # every placement names a real pool


def test_prod_expresses_base_spot_and_scheduled_peak(stack_values):
    cfg = parse(stack_values("prod"))
    glm = next(m for m in cfg.models if m.source == "zai-org/GLM-5.1-FP8")
    capacities = {cfg.pool(p.pool).capacity for p in glm.placements}
    assert capacities == {"on-demand", "spot"}
    peak = next(cfg.pool(p.pool) for p in glm.placements if cfg.pool(p.pool).schedule)
    assert peak.schedule.timezone == "Asia/Shanghai" and peak.schedule.prewarm_auto   # lead = the cold start


def test_numbers_scaled_to_zero_stay_zero(stack_values):
    values = stack_values("dev")
    values["llm-fleet:pools"][0].update(minSize=0, desiredSize=0)
    pool = parse(values).pools[0]
    assert pool.min_size == 0 and pool.desired_size == 0


@pytest.mark.parametrize("mutate, expected", [
    (lambda v: v.__setitem__("llm-fleet:modles", []), "llm-fleet.modles: unknown key"),
    (lambda v: v["llm-fleet:pools"][0].__setitem__("maxsize", 3), "llm-fleet.pools[0].maxsize: unknown key"),
    (lambda v: v["llm-fleet:pools"][0].__setitem__("capacity", "spott"), "did you mean 'spot'"),
    (lambda v: v["llm-fleet:pools"][0].__setitem__("minSize", 5), "minSize: 5 is above maxSize 2"),
    (lambda v: v["llm-fleet:pools"][0].__setitem__("minSize", "1"), "expected a whole number, got '1'"),
    (lambda v: v["llm-fleet:models"][0].__setitem__("pool", "nope"),
     "no pool named 'nope'; pools in this stack: l4-spot"),
    (lambda v: v["llm-fleet:models"][0].__setitem__("precision", "fp4"), "use one of: bf16, fp8, int4"),
    (lambda v: v["llm-fleet:models"][0].__setitem__("engine", "tgi"), "use one of: vllm, sglang"),
    (lambda v: v["llm-fleet:models"][0].__setitem__("source", "not a model"), "neither a Hugging Face id"),
    (lambda v: v["llm-fleet:models"][0].__setitem__("source", "./nowhere"), "without a config.json"),
    (lambda v: v["llm-fleet:models"][0].__setitem__("replicas", {"min": 3, "max": 1}), "min: 3 is above max 1"),
    (lambda v: v.__setitem__("aws:region", "mars-1"), "aws:region: 'mars-1' is not an AWS region"),
    (lambda v: v["llm-fleet:pools"][0]["schedule"].__setitem__("timezone", "Mars/Olympus"),
     "'Mars/Olympus' is not an IANA time zone"),
    (lambda v: v["llm-fleet:pools"][0]["schedule"]["windows"][0].__setitem__("end", "07:00"),
     "windows[0].end: '07:00' is not after start '08:00'"),
    (lambda v: v["llm-fleet:pools"][0]["schedule"]["windows"][0].__setitem__("start", "8am"), "not a time of day"),
    (lambda v: v["llm-fleet:pools"][0]["schedule"]["windows"][0].__setitem__("days", "fri-mon"), "runs backwards"),
    (lambda v: v["llm-fleet:pools"][0]["schedule"]["windows"][0].__setitem__("size", 9), "above the maximum 2"),
    (lambda v: v["llm-fleet:pools"][0]["schedule"].__setitem__("windows", []), "needs at least one window"),
    (lambda v: v["llm-fleet:pools"][0]["schedule"]["windows"].append(
        {"days": "wed", "start": "18:00", "end": "20:00", "size": 1}), "overlaps window [0] on wed"),
    (lambda v: v["llm-fleet:pools"][0].update(capacity="capacity-block", instanceTypes=["p5en.48xlarge"]),
     "capacity-block pool needs the reservation id"),
    (lambda v: v["llm-fleet:pools"].append(dict(v["llm-fleet:pools"][0])), "'l4-spot' is used twice"),
    (lambda v: v["llm-fleet:gateway"].update(exposure="internet-facing"), "internet-facing gateway needs TLS"),
    (lambda v: v["llm-fleet:gateway"].update(masterKey="sk-live-123"), "clear-text credential is not allowed"),
    (lambda v: v["llm-fleet:gateway"].update(masterKey={"pulumiSecret": "gatewayKey"}),
     "not a secret in this stack; run `pulumi config set --secret gatewayKey"),
    (lambda v: v["llm-fleet:gateway"].update(fallbacks={"ghost": {"provider": "deepinfra", "model": "m", "apiKey": {
        "secretsManager": "arn:aws:secretsmanager:us-east-1:123456789012:secret:x"}}}), "no model named 'ghost'"),
    (lambda v: v["llm-fleet:engines"].__setitem__("vllm", {"version": "latest"}) if "llm-fleet:engines" in v
     else v.__setitem__("llm-fleet:engines", {"vllm": {"version": "latest"}}), "never latest"),
    (lambda v: v["llm-fleet:network"].update(existingPrivateSubnetIds=["subnet-0123456789abcdef0"]),
     "subnet ids are given without the VPC"),
    (lambda v: v["llm-fleet:monitoring"].update(prometheus="existing"), "prometheus: existing needs the URL"),
    (lambda v: v["llm-fleet:models"][0].__setitem__("fallback", "sometimes"), "use one of: allowed, never"),
    (lambda v: v["llm-fleet:gateway"].update(teams=[{"name": "ops", "fallback": "no", "apiKey": {
        "secretsManager": "arn:aws:secretsmanager:us-east-1:123456789012:secret:x"}}]), "use one of: allowed, never"),
    (lambda v: v["llm-fleet:gateway"].update(redis={"port": 6379}), "gateway.redis.host"),
    (lambda v: v.__setitem__("llm-fleet:engines", {"vllm": {"efaImage": "repo/vllm-efa"}}), "efaImage"),
    (lambda v: v["llm-fleet:cluster"].update(name="a" * 32) or v["llm-fleet:pools"][0].update(name="b" * 31),
     "is over EKS's 63 characters"),
])
def test_bad_input_is_refused_with_path_and_way_out(stack_values, mutate, expected):
    values = stack_values("dev")
    mutate(values)
    with pytest.raises(ConfigError) as err:
        parse(values)
    assert expected in str(err.value)


def test_pulumi_secret_reference_accepted_when_the_key_is_secret(stack_values):
    values = stack_values("dev")
    values["llm-fleet:gateway"]["masterKey"] = {"pulumiSecret": "gatewayKey"}
    values["llm-fleet:gatewayKey"] = {"secure": "v1:abc"}
    cfg = parse(values, secret_keys={"llm-fleet:gatewayKey"})
    assert cfg.gateway.master_key.pulumi_key == "gatewayKey"
    assert "llm-fleet:gatewayKey" in cfg.secret_keys


def test_local_model_directory_is_resolved(stack_values, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    values = stack_values("dev")
    values["llm-fleet:models"][0]["source"] = str(tmp_path / "m")
    assert parse(values).models[0].is_local


def test_stack_file_name_and_yaml_errors(tmp_path):
    bad = tmp_path / "Pulumi.x.yaml"
    bad.write_text("config: [unclosed")
    with pytest.raises(ConfigError, match=r"Pulumi.x.yaml:1:18: YAML syntax error: expected .* but got"):
        load_stack_file(bad)
    with pytest.raises(ConfigError, match="no such stack file"):
        load_stack_file(tmp_path / "Pulumi.missing.yaml")
    with pytest.raises(ConfigError, match="named Pulumi.<stack>.yaml"):
        load_stack_file(tmp_path / "stack.yaml")


def test_existing_cluster_kubeconfig_secret_must_be_a_stack_secret(stack_values):
    values = stack_values("dev")
    values["llm-fleet:cluster"] = {"existing": {"kubeconfig": {"pulumiSecret": "kubeconfig"}}}
    with pytest.raises(ConfigError, match="'kubeconfig' is not a secret in this stack"):
        parse(values)
    values["llm-fleet:kubeconfig"] = {"secure": "v1:abc"}
    cfg = parse(values, secret_keys={"llm-fleet:kubeconfig"})
    assert cfg.cluster.existing.kubeconfig.pulumi_key == "kubeconfig"


def test_jobs_image_must_be_pinned(stack_values):
    values = stack_values("staging")
    values["llm-fleet:jobs"]["image"] = "ghcr.io/acme/llm-fleet-jobs:latest"
    with pytest.raises(ConfigError, match="jobs.image: .* is not pinned"):
        parse(values)
    values["llm-fleet:jobs"]["image"] = "ghcr.io/acme/llm-fleet-jobs"
    with pytest.raises(ConfigError, match="pin the image by tag or digest"):
        parse(values)
    values["llm-fleet:jobs"]["image"] = "ghcr.io/acme/llm-fleet-jobs@sha256:" + "a" * 64
    assert parse(values).jobs.image.endswith("a" * 64)


def test_engine_pins_and_their_efa_image(stack_values):
    cfg = parse(stack_values("dev"))
    assert cfg.engines["vllm"].ref == "vllm/vllm-openai:v0.28.0"
    assert cfg.engines["vllm"].efa_image.startswith("public.ecr.aws/deep-learning-containers/vllm:0.28.0-")
    assert cfg.engines["sglang"].ref == "lmsysorg/sglang:v0.5.10" and cfg.engines["sglang"].efa_image is None
    values = stack_values("dev")
    values["llm-fleet:engines"] = {"vllm": {"version": "v0.25.1"}}
    assert parse(values).engines["vllm"].efa_image is None, "the default EFA image matches only its own version"


def test_fallback_policy_and_redis_are_read(stack_values):
    values = stack_values("prod")
    values["llm-fleet:models"][0]["fallback"] = "never"
    values["llm-fleet:gateway"]["redis"] = {"host": "redis.cache.svc"}
    cfg = parse(values)
    assert cfg.models[0].fallback == "never" and cfg.models[1].fallback == "allowed"
    assert {t.name: t.fallback for t in cfg.gateway.teams}["legal"] == "never"
    redis = cfg.gateway.redis
    assert (redis.host, redis.port, redis.password) == ("redis.cache.svc", 6379, None)
    assert parse(stack_values("dev")).gateway.redis is None
