"""Isolation in the render: only the gateway (and Prometheus) reach engines, engines ask for a key that
only the gateway holds, and EKS enforces NetworkPolicy."""

from __future__ import annotations

import json

import pytest

from infra.serving import isolation
from infra.stack.names import PROMETHEUS_URL


def _matches(selector: dict, labels: dict) -> bool:
    return selector.get("matchLabels", {}).items() <= labels.items()


def _pod_labels(records, kind: str, name: str) -> dict:
    rec = next(r for r in records if r["type"] == kind and r["inputs"]["metadata"]["name"] == name)
    return rec["inputs"]["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("stack", ["prod", "existing-cluster"])
def test_only_the_gateway_and_prometheus_reach_engines(rendered, stack):
    records = rendered(stack)
    (pol,) = [r["inputs"] for r in records if r["type"] == "kubernetes:networking.k8s.io/v1:NetworkPolicy"]
    spec = pol["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    engine = _pod_labels(records, "kubernetes:apps/v1:Deployment",
                         "glm-5-1-h200-base" if stack == "prod" else "glm-4-5-air-h100")
    gateway = _pod_labels(records, "kubernetes:apps/v1:Deployment", "llm-gateway")
    assert _matches(spec["podSelector"], engine)
    peers = [(peer, rule.get("ports")) for rule in spec["ingress"] for peer in rule["from"]]
    # the gateway: on the API port only
    assert any("namespaceSelector" not in p and _matches(p["podSelector"], gateway) and ports == [
        {"protocol": "TCP", "port": 8000}] for p, ports in peers)
    # Prometheus: its namespace's prometheus pods, on the API port only
    prom = [(p, ports) for p, ports in peers if "namespaceSelector" in p]
    assert len(prom) == 1 and prom[0][1] == [{"protocol": "TCP", "port": 8000}]
    ns = "monitoring"
    assert prom[0][0]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": ns}}
    # nothing else: no rule without a peer, no peer that admits any pod of the namespace
    assert all(rule["from"] for rule in spec["ingress"])
    assert all(p.get("podSelector", {}).get("matchLabels") for p, _ in peers)
    assert not any(_matches(p["podSelector"], {"app.kubernetes.io/name": "some-other-app"}) for p, _ in peers)


def test_engines_take_their_api_key_from_a_generated_secret(rendered):
    records = rendered("prod")
    es = next(r for r in records if r["name"] == "serving-engine-key")
    assert es["inputs"]["spec"]["refreshPolicy"] == "CreatedOnce"
    assert es["inputs"]["spec"]["target"]["template"]["data"] == {"api-key": "{{ .password }}"}
    dep = next(r for r in records if r["type"] == "kubernetes:apps/v1:Deployment"
               and r["inputs"]["metadata"]["name"] == "glm-5-1-h200-base")
    env = {e["name"]: e for e in dep["inputs"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["VLLM_API_KEY"] == {"name": "VLLM_API_KEY", "valueFrom": {
        "secretKeyRef": {"name": "llm-engine-key", "key": "api-key"}}}
    gw = next(r for r in records if r["type"] == "kubernetes:apps/v1:Deployment"
              and r["inputs"]["metadata"]["name"] == "llm-gateway")
    genv = {e["name"]: e for e in gw["inputs"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert genv["LLMFLEET_ENGINE_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "llm-engine-key", "key": "api-key"}
    assert "value" not in genv["LLMFLEET_ENGINE_API_KEY"]


def test_eks_enforces_network_policy(rendered):
    addon = next(r for r in rendered("prod") if r["type"] == "aws:eks/addon:Addon"
                 and r["inputs"]["addonName"] == "vpc-cni")
    assert json.loads(addon["inputs"]["configurationValues"]) == {"enableNetworkPolicy": "true"}


def test_prometheus_peer_from_its_url():
    assert isolation.prometheus_peer(PROMETHEUS_URL)["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    assert isolation.prometheus_peer("http://prom.example.com:9090")["namespaceSelector"] == {}
    assert isolation.prometheus_peer(None) is None
