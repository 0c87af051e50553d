"""The gateway on Kubernetes: config from the stack, keys only through Secrets (never a literal in a
manifest), the NLB Service, and the rendered objects for a stack with Pulumi-secret keys."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import yaml

from infra.serving import gateway as gw
from infra.serving import gateway_k8s as gk
from infra.stack.config import parse_config
from infra.stack.spec import SecretRef
from scripts.render import MASK, render

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:llm-fleet/prod/"


def prod_cfg(stack_values, edit=None):
    values = stack_values("prod")
    if edit:
        edit(values)
    return parse_config(values, "prod")


def backends(cfg):
    return {m.name: (f"http://{m.name}-engine.llm-fleet.svc.cluster.local:8000/v1", m.name) for m in cfg.models}


def test_spec_routes_every_model_to_its_one_service_with_fallback_and_teams(stack_values):
    cfg = prod_cfg(stack_values)
    spec, refs = gk.gateway_spec(cfg, backends(cfg), {"glm-5-1": 1500})
    glm = next(r for r in spec.routes if r.model == "glm-5-1")
    assert [b.url for b in glm.backends] == ["http://glm-5-1-engine.llm-fleet.svc.cluster.local:8000/v1"]
    assert glm.fallback == gw.Fallback("deepinfra", "zai-org/GLM-5.1", "FALLBACK_GLM_5_1_API_KEY", None)
    assert glm.timeout_seconds == 600 and glm.stream_timeout_seconds == 120 and glm.cold_start_seconds == 1500
    assert next(r for r in spec.routes if r.model == "qwen2-5-7b").fallback is None
    teams = {t.name: t for t in spec.teams}
    assert teams["risk"].rpm == 600 and teams["risk"].tpm == 2_000_000 and teams["research"].models == ("qwen2-5-7b",)
    assert teams["legal"].private_only and not teams["risk"].private_only
    assert refs["LITELLM_MASTER_KEY"] == SecretRef(secrets_manager_arn=ARN + "gateway-master-key")
    assert set(refs) == {"LITELLM_MASTER_KEY", "LLMFLEET_ENGINE_API_KEY", "FALLBACK_GLM_5_1_API_KEY",
                         "TEAM_RISK_API_KEY", "TEAM_RESEARCH_API_KEY", "TEAM_LEGAL_API_KEY"}
    assert spec.num_retries == 1 and spec.request_timeout_seconds == 600 and spec.redis is None


def test_model_fallback_never_wins_over_its_fallback_list(stack_values):
    def never(values):
        values["llm-fleet:models"][0]["fallback"] = "never"
    cfg = prod_cfg(stack_values, never)
    spec, refs = gk.gateway_spec(cfg, backends(cfg))
    glm = next(r for r in spec.routes if r.model == "glm-5-1")
    assert glm.fallback is None and glm.private_only
    assert "FALLBACK_GLM_5_1_API_KEY" not in refs, "no provider key reaches a gateway that may not use it"


def test_redis_rate_limits_are_opt_in(stack_values):
    def redis(values):
        values["llm-fleet:gateway"]["redis"] = {"host": "redis.cache.svc", "password": {"secretsManager": ARN + "r"}}
    cfg = prod_cfg(stack_values, redis)
    spec, refs = gk.gateway_spec(cfg, backends(cfg))
    assert spec.redis == gw.Redis("redis.cache.svc", 6379, "LLMFLEET_REDIS_PASSWORD")
    assert refs["LLMFLEET_REDIS_PASSWORD"] == SecretRef(secrets_manager_arn=ARN + "r")


def test_config_files_hold_references_not_keys(stack_values):
    cfg = prod_cfg(stack_values)
    spec, _ = gk.gateway_spec(cfg, backends(cfg))
    files = gk.config_files(spec)
    config = yaml.safe_load(files["config.yaml"])
    assert config["litellm_settings"]["callbacks"] == ["prometheus", gw.HOOKS_INSTANCE]
    assert config["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    assert config["router_settings"]["fallbacks"] == [{"glm-5-1": ["glm-5-1-fallback"]}]
    assert all(p["litellm_params"]["merge_reasoning_content_in_choices"] is False for p in config["model_list"])
    assert {gw.AUTH_HOOK_FILE, gw.HOOKS_FILE} <= set(files) and "arn:aws" not in json.dumps(files)


def test_key_sources_by_cluster_kind():
    sm, ps = SecretRef(secrets_manager_arn=ARN + "k"), SecretRef(pulumi_key="teamKey")
    managed = gk.key_sources({"A": sm, "B": ps, "LITELLM_MASTER_KEY": None}, managed=True)
    assert (managed["A"].secret, managed["A"].key) == (gk.AWS_KEYS_SECRET, "A")       # ESO on EKS
    assert (managed["B"].secret, managed["B"].key) == (gk.KEYS_SECRET, "B")           # Pulumi secret
    master = managed["LITELLM_MASTER_KEY"]
    assert (master.secret, master.key) == (gk.GENERATED_SECRET, "password")
    existing = gk.key_sources({"A": sm}, managed=False)
    assert existing["A"].secret == gk.KEYS_SECRET                                     # read at deploy time


def test_deployment_reads_every_key_from_a_secret(stack_values):
    cfg = prod_cfg(stack_values)
    spec, refs = gk.gateway_spec(cfg, backends(cfg))
    sources = gk.key_sources(refs, managed=True)
    files = gk.config_files(spec)
    dep = gk.deployment("llm-fleet", 2, files, sources)
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == gk.LITELLM_IMAGE and ":latest" not in c["image"]
    by_name = {e["name"]: e for e in c["env"]}
    for env in gw.env_vars(spec):
        assert "value" not in by_name[env]
        assert by_name[env]["valueFrom"]["secretKeyRef"] == {"name": sources[env].secret, "key": sources[env].key}
    assert by_name["LITELLM_LOCAL_MODEL_COST_MAP"]["value"] == "True"
    assert c["args"][:2] == ["--config", f"{gk.CONFIG_DIR}/config.yaml"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/health/readiness"
    assert dep["spec"]["template"]["metadata"]["annotations"]["llm-fleet/config-sha256"] == gk.config_hash(files)
    assert dep["spec"]["replicas"] == 2


def test_service_is_an_internal_nlb_by_default(stack_values):
    svc = gk.service("llm-fleet", prod_cfg(stack_values), managed=True)
    ann = svc["metadata"]["annotations"]
    assert ann["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"
    assert svc["spec"]["loadBalancerClass"] == "service.k8s.aws/nlb"
    assert svc["spec"]["loadBalancerSourceRanges"] == ["10.0.0.0/8"] and svc["spec"]["ports"][0]["port"] == 80
    assert "service.beta.kubernetes.io/aws-load-balancer-ssl-cert" not in ann
    idle = "service.beta.kubernetes.io/aws-load-balancer-listener-attributes.TCP-80"
    assert ann[idle] == "tcp.idle_timeout.seconds=660"                  # request timeout + 60 s
    assert svc["metadata"]["labels"]["llm-fleet/auth"] == "api-key"


def test_internet_facing_gateway_has_tls_and_cidrs(stack_values):
    cert = "arn:aws:acm:us-east-1:123456789012:certificate/abc"

    def edit(v):
        v["llm-fleet:gateway"].update(exposure="internet-facing", certificateArn=cert, allowedCidrs=["203.0.113.0/24"])
    svc = gk.service("llm-fleet", prod_cfg(stack_values, edit), managed=True)
    ann = svc["metadata"]["annotations"]
    assert ann["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internet-facing"
    assert ann["service.beta.kubernetes.io/aws-load-balancer-ssl-cert"] == cert
    assert ann["service.beta.kubernetes.io/aws-load-balancer-ssl-ports"] == "443"
    assert svc["spec"]["ports"][0]["port"] == 443 and svc["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24"]


def test_existing_cluster_gets_a_cluster_ip(stack_values):
    svc = gk.service("llm-fleet", prod_cfg(stack_values), managed=False)
    assert svc["spec"]["type"] == "ClusterIP" and "annotations" not in svc["metadata"]
    assert gk.in_cluster_url("llm-fleet") == "http://llm-gateway.llm-fleet.svc.cluster.local:4000"


def test_external_secret_manifests():
    es = gk.external_secret("llm-fleet", "x", "x", {"B": ARN + "b", "A": ARN + "a"})
    assert es["spec"]["data"] == [{"secretKey": "A", "remoteRef": {"key": ARN + "a"}},
                                  {"secretKey": "B", "remoteRef": {"key": ARN + "b"}}]
    assert es["spec"]["secretStoreRef"] == {"kind": "SecretStore", "name": gk.SECRET_STORE}
    store = gk.secret_store("llm-fleet", "us-east-1")
    assert store["spec"] == {"provider": {"aws": {"service": "SecretsManager", "region": "us-east-1"}}}
    gen = gk.generated_secret("llm-fleet")
    assert gen["spec"]["refreshPolicy"] == "CreatedOnce"


# ---------------------------------------------------------------------------------------------- rendered

STACK = Path(__file__).resolve().parents[2] / "stacks" / "Pulumi.prod.yaml"


@functools.cache
def _rendered_with_pulumi_secrets(tmp: str) -> tuple:
    doc = yaml.safe_load(STACK.read_text())
    config = doc["config"]
    gwc = config["llm-fleet:gateway"]
    gwc["masterKey"] = {"pulumiSecret": "gatewayMasterKey"}
    gwc["teams"][0]["apiKey"] = {"pulumiSecret": "teamRiskKey"}
    config["llm-fleet:gatewayMasterKey"] = {"secure": "v1:bm90LXJlYWw=:bm90LXJlYWw="}
    config["llm-fleet:teamRiskKey"] = {"secure": "v1:bm90LXJlYWw=:bm90LXJlYWw="}
    path = Path(tmp) / "Pulumi.pulumisecrets.yaml"
    path.write_text(yaml.safe_dump(doc))
    return tuple(render(path))


def test_rendered_pulumi_secret_keys_stay_secret(tmp_path_factory):
    records = _rendered_with_pulumi_secrets(str(tmp_path_factory.mktemp("stack")))
    secret = next(r for r in records
                  if r["type"] == "kubernetes:core/v1:Secret" and r["name"] == "serving-llm-gateway-keys")
    assert secret["inputs"]["stringData"] == MASK          # the whole map is a Pulumi secret
    assert "bm90LXJlYWw" not in json.dumps(records)         # the ciphertext never reaches a manifest
    es = next(r for r in records if r["name"] == "serving-gateway-keys-aws")
    keys = {d["secretKey"] for d in es["inputs"]["spec"]["data"]}
    assert keys == {"FALLBACK_GLM_5_1_API_KEY", "TEAM_RESEARCH_API_KEY", "TEAM_LEGAL_API_KEY"}
    gateway = next(r for r in records if r["name"] == "serving-gateway")
    env = gateway["inputs"]["spec"]["template"]["spec"]["containers"][0]["env"]
    keyed = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in env if "valueFrom" in e}
    assert keyed == {"LITELLM_MASTER_KEY": gk.KEYS_SECRET, "TEAM_RISK_API_KEY": gk.KEYS_SECRET,
                     "FALLBACK_GLM_5_1_API_KEY": gk.AWS_KEYS_SECRET, "TEAM_RESEARCH_API_KEY": gk.AWS_KEYS_SECRET,
                     "TEAM_LEGAL_API_KEY": gk.AWS_KEYS_SECRET, "LLMFLEET_ENGINE_API_KEY": "llm-engine-key"}
    assert all("value" not in e for e in env if e["name"] in keyed)
