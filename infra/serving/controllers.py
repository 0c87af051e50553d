"""Cluster controllers the serving stack needs, each a pinned Helm Release (helm.v3.Release installs at
`pulumi up`, never renders or downloads at preview), and the AWS identity of External Secrets.

Pins (chart version = what `helm install --version` takes), each read from the chart's own repository:
  LWS                    0.10.0  oci://registry.k8s.io/lws/charts/lws  (kubernetes-sigs/lws tag v0.10.0,
                         site/content/en/docs/installation; its CRD's conversion webhook names the Service
                         lws-webhook-service in lws-system, so release `lws` in namespace `lws-system`)
  KEDA                   2.20.2  https://kedacore.github.io/charts      (kedacore/charts tag v2.20.2)
  External Secrets       2.9.0   https://charts.external-secrets.io     (external-secrets tag helm-chart-2.9.0)
  kube-prometheus-stack  88.5.3  https://prometheus-community.github.io/helm-charts
                         (prometheus-community/helm-charts tag kube-prometheus-stack-88.5.3, operator v0.93.1)
  dcgm-exporter          4.8.2   https://nvidia.github.io/dcgm-exporter/helm-charts
                         (NVIDIA/dcgm-exporter deployment/Chart.yaml at tag 4.5.3-4.8.2; image
                         nvcr.io/nvidia/k8s/dcgm-exporter:4.5.3-4.8.2-distroless from its values.yaml)
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.stack import names
from infra.wiring import KubeTarget


@dataclass(frozen=True)
class Chart:
    release: str
    chart: str
    version: str
    repo: str | None          # None: `chart` is an oci:// reference
    namespace: str


LWS = Chart("lws", "oci://registry.k8s.io/lws/charts/lws", "0.10.0", None, "lws-system")
LWS_IMAGE_TAG = "v0.10.0"     # the published chart sets it (hack/push-chart.sh); pinned here as well
KEDA = Chart("keda", "keda", "2.20.2", "https://kedacore.github.io/charts", "keda")
ESO = Chart("external-secrets", "external-secrets", "2.9.0", "https://charts.external-secrets.io", "external-secrets")
PROMETHEUS = Chart(names.PROMETHEUS_RELEASE, "kube-prometheus-stack", "88.5.3",
                   "https://prometheus-community.github.io/helm-charts", names.MONITORING_NAMESPACE)
DCGM = Chart("dcgm-exporter", "dcgm-exporter", "4.8.2", "https://nvidia.github.io/dcgm-exporter/helm-charts",
             "llm-fleet")
DCGM_IMAGE_TAG = "4.5.3-4.8.2-distroless"
ESO_SERVICE_ACCOUNT = "external-secrets"
HELM_TIMEOUT = 900


def release(name: str, chart: Chart, values: dict, parent: pulumi.Resource, kube: KubeTarget,
            depends_on: list[pulumi.Resource] | None = None) -> k8s.helm.v3.Release:
    """A pinned Release that waits for its resources (so CRDs exist before anything depends on it)."""
    return k8s.helm.v3.Release(
        name,
        name=chart.release,
        chart=chart.chart,
        version=chart.version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repo) if chart.repo else None,
        namespace=chart.namespace,
        create_namespace=True,
        atomic=True,
        cleanup_on_fail=True,
        timeout=HELM_TIMEOUT,
        values=values,
        opts=pulumi.ResourceOptions(parent=parent, provider=kube.provider, depends_on=depends_on or []),
    )


def dcgm_values() -> dict:
    """GPU nodes only (they carry `llm-fleet/gpu` and the nvidia.com/gpu taint); our own ServiceMonitor
    (monitoring.dcgm_service_monitor) scrapes it, so the chart's is off (it would also need the CRD)."""
    return {"image": {"tag": DCGM_IMAGE_TAG},
            "serviceMonitor": {"enabled": False},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": names.LABEL_GPU, "operator": "Exists"}]}]}}}}


def lws_values() -> dict:
    return {"image": {"manager": {"tag": LWS_IMAGE_TAG, "pullPolicy": "IfNotPresent"}}}


def keda_values() -> dict:
    return {"resources": {"operator": {"requests": {"cpu": "100m", "memory": "256Mi"}}}}


def eso_values() -> dict:
    return {"installCRDs": True, "serviceAccount": {"create": True, "name": ESO_SERVICE_ACCOUNT}}


def eso_pod_identity(name: str, secret_arns: list[str], cluster_name: pulumi.Output[str],
                     parent: pulumi.Resource, tags: dict[str, str]) -> aws.eks.PodIdentityAssociation:
    """IAM role for the ESO controller, bound by EKS Pod Identity: read exactly the stack's secrets.

    Pod Identity rather than IRSA: the trust policy names no cluster OIDC issuer (the serving component
    only knows the cluster name) and the association is one resource. Needs the `eks-pod-identity-agent`
    add-on on the cluster. Secrets Manager ARNs end in a random 6-character suffix, hence `-??????`.
    """
    child = pulumi.ResourceOptions(parent=parent)
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:TagSession"]}]}
    role = aws.iam.Role(f"{name}-role", assume_role_policy=json.dumps(trust),
                        description="External Secrets Operator: read the llm-fleet gateway keys", tags=tags,
                        opts=child)
    resources = sorted({r for arn in secret_arns for r in (arn, f"{arn}-??????")})
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
        "Resource": resources}]}
    aws.iam.RolePolicy(f"{name}-read", role=role.id, policy=json.dumps(policy), opts=child)
    return aws.eks.PodIdentityAssociation(
        f"{name}-identity", cluster_name=cluster_name, namespace=ESO.namespace,
        service_account=ESO_SERVICE_ACCOUNT, role_arn=role.arn, tags=tags, opts=child)
