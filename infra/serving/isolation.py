"""Who may reach the engines (pure builders): one NetworkPolicy on every engine pod.

Allowed in, on the engine port only: the gateway's pods (which check team keys and limits) and the
Prometheus pods (for /metrics; a NetworkPolicy cannot tell paths apart, and /v1 also asks for the
engines' API key, which only the gateway holds). Engine pods reach each other on any port: the ranks of a
multi-node replica (NCCL, torch.distributed, the workers' probes of their leader). Everything else in
the cluster is refused. Kubelet probes come from the node and are not subject to the policy on the VPC
CNI and Calico. On EKS the VPC CNI enforces NetworkPolicy only with `enableNetworkPolicy` set on its
add-on (infra/aws/cluster.py does); on an existing cluster your CNI must enforce it.
"""

from __future__ import annotations

import re
from typing import Any

from infra.planning.sizing import PORT
from infra.serving.engines import ROLE_ENGINE
from infra.stack.names import LABEL_ROLE

# kube-prometheus-stack's Prometheus pods (operator-managed StatefulSet) carry this label
PROMETHEUS_POD_LABELS = {"app.kubernetes.io/name": "prometheus"}
NAMESPACE_LABEL = "kubernetes.io/metadata.name"   # set by the API server on every namespace
_SVC_HOST = re.compile(r"^https?://[^./:]+\.([a-z0-9-]+)\.svc(\.|:|/|$)")


def prometheus_peer(url: str | None) -> dict[str, Any] | None:
    """The NetworkPolicy peer for the Prometheus behind `url`: its namespace when the URL is an in-cluster
    Service name (`<svc>.<namespace>.svc...`), else Prometheus pods in any namespace; None: no Prometheus."""
    if url is None:
        return None
    match = _SVC_HOST.match(url)
    namespaces = {"matchLabels": {NAMESPACE_LABEL: match.group(1)}} if match else {}
    return {"namespaceSelector": namespaces, "podSelector": {"matchLabels": dict(PROMETHEUS_POD_LABELS)}}


def engine_network_policy(namespace: str, gateway_labels: dict[str, str],
                          prometheus: dict[str, Any] | None) -> dict[str, Any]:
    engine = {"matchLabels": {LABEL_ROLE: ROLE_ENGINE}}
    api_port = [{"protocol": "TCP", "port": PORT}]
    ingress: list[dict[str, Any]] = [
        {"from": [{"podSelector": {"matchLabels": dict(gateway_labels)}}], "ports": api_port},
        {"from": [{"podSelector": engine}]},
    ]
    if prometheus is not None:
        ingress.append({"from": [prometheus], "ports": api_port})
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "llm-engines-ingress", "namespace": namespace,
                         "labels": {"app.kubernetes.io/part-of": "llm-fleet"}},
            "spec": {"podSelector": engine, "policyTypes": ["Ingress"], "ingress": ingress}}
