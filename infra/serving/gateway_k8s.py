"""The LiteLLM gateway on Kubernetes: its config (from infra.serving.gateway) in a ConfigMap, keys in
Secrets, a Deployment, a PodDisruptionBudget and a Service behind an NLB (AWS Load Balancer Controller).

Keys never appear in a manifest. Where each comes from:
  pulumiSecret     a Kubernetes Secret filled from `pulumi.Config("llm-fleet").require_secret(key)`
                   (encrypted in the Pulumi state, sent to the API server only).
  secretsManager   on the EKS cluster this project makes: an External Secrets Operator ExternalSecret
                   (the controller reads Secrets Manager with its own IAM role, see controllers.py), so
                   a rotated key reaches the cluster within the refresh interval without a deploy.
                   On an existing cluster (no IAM identity we control there): read at deploy time
                   with the deployer's AWS credentials into a Kubernetes Secret (a Pulumi secret).
  no master key    an ESO `Password` generator makes one once (refreshPolicy CreatedOnce); read it with
                   `kubectl -n llm-fleet get secret llm-gateway-generated -o jsonpath='{.data.password}'`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import yaml

from infra.serving import gateway as gw
from infra.serving import gateway_hooks
from infra.serving.engines import ENGINE_KEY_ENV, ENGINE_KEY_ITEM, ENGINE_KEY_SECRET
from infra.stack import names
from infra.stack.spec import SecretRef, StackConfig

# Pinned: LiteLLM publishes plain vX.Y.Z tags on GHCR since its move to SemVer (BerriAI/litellm-docs
# PR #417; release notes "published as ghcr.io/berriai/litellm:v1.102.3"). 1.106.2 is the version
# tests/serving/test_gateway_live.py runs.
LITELLM_IMAGE = "ghcr.io/berriai/litellm:v1.106.2"
NAME = "llm-gateway"
PORT = 4000
CONFIG_DIR = "/app/llmfleet"
KEYS_SECRET = "llm-gateway-keys"            # Pulumi-managed
AWS_KEYS_SECRET = "llm-gateway-keys-aws"    # ESO target (Secrets Manager)
GENERATED_SECRET = "llm-gateway-generated"  # ESO Password generator target
GENERATED_KEY = "password"
SECRET_STORE = "aws-secrets-manager"
ESO_API = "external-secrets.io/v1"
GENERATOR_API = "generators.external-secrets.io/v1alpha1"
REFRESH = "1h"
LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "llm-fleet", names.LABEL_ROLE: "gateway"}


def env_name(prefix: str, name: str) -> str:
    return f"{prefix}_{re.sub(r'[^A-Z0-9]', '_', name.upper())}_API_KEY"


@dataclass(frozen=True)
class KeySource:
    """Where the pod reads one env var: Secret name and key. `ref` None: generated in the cluster."""
    env: str
    ref: SecretRef | None
    secret: str
    key: str


def key_sources(refs: dict[str, SecretRef | None], managed: bool) -> dict[str, KeySource]:
    out = {}
    for env, ref in refs.items():
        if env == ENGINE_KEY_ENV:
            out[env] = KeySource(env, None, ENGINE_KEY_SECRET, ENGINE_KEY_ITEM)
        elif ref is None:
            out[env] = KeySource(env, None, GENERATED_SECRET, GENERATED_KEY)
        elif ref.secrets_manager_arn and managed:
            out[env] = KeySource(env, ref, AWS_KEYS_SECRET, env)
        else:
            out[env] = KeySource(env, ref, KEYS_SECRET, env)
    return out


def gateway_spec(cfg: StackConfig, backends: dict[str, tuple[str, str]], cold_starts: dict[str, int] | None = None
                 ) -> tuple[gw.GatewaySpec, dict[str, SecretRef | None]]:
    """The typed gateway spec and, per env var, the stack's SecretRef (None: generated in the cluster).
    `backends`: model -> (OpenAI base URL of the model's Service, served model name); `cold_starts`:
    model -> seconds one replica takes to start (the planner's figure, for the 503 message)."""
    g = cfg.gateway
    refs: dict[str, SecretRef | None] = {"LITELLM_MASTER_KEY": g.master_key, ENGINE_KEY_ENV: None}
    # time to first chunk: past this a stream falls back; generous for reasoning models under load
    stream_timeout = max(30, min(g.request_timeout_seconds, 120))
    routes = []
    for model in cfg.models:
        fb = g.fallbacks.get(model.name)
        fallback = None
        if fb is not None and model.fallback != "never":
            key_env = env_name("FALLBACK", model.name)
            refs[key_env] = fb.api_key
            fallback = gw.Fallback(provider=fb.provider, model=fb.model, api_key_env=key_env, api_base=fb.api_base)
        url, served = backends[model.name]
        routes.append(gw.Route(model=model.name, backends=(gw.Backend(url, served),),
                               fallback=fallback, timeout_seconds=g.request_timeout_seconds,
                               stream_timeout_seconds=stream_timeout, private_only=model.fallback == "never",
                               cold_start_seconds=(cold_starts or {}).get(model.name)))
    teams = []
    for team in g.teams:
        key_env = env_name("TEAM", team.name)
        refs[key_env] = team.api_key
        teams.append(gw.Team(name=team.name, key_env=key_env, rpm=team.rpm, tpm=team.tpm, models=team.models,
                             private_only=team.fallback == "never"))
    redis = None
    if g.redis is not None:
        password_env = "LLMFLEET_REDIS_PASSWORD" if g.redis.password is not None else None
        if password_env:
            refs[password_env] = g.redis.password
        redis = gw.Redis(g.redis.host, g.redis.port, password_env)
    spec = gw.GatewaySpec(routes=tuple(routes), teams=tuple(teams), master_key_env="LITELLM_MASTER_KEY",
                          num_retries=g.num_retries, request_timeout_seconds=g.request_timeout_seconds,
                          engine_key_env=ENGINE_KEY_ENV, redis=redis)
    return spec, refs


def config_files(spec: gw.GatewaySpec) -> dict[str, str]:
    """config.yaml and the two hook modules, side by side (LiteLLM imports them from the config's
    directory). The prometheus callback serves /metrics without a key for the ServiceMonitor."""
    return {"config.yaml": yaml.safe_dump(gw.litellm_config(spec), sort_keys=False),
            **gateway_hooks.module_sources(spec)}


def config_hash(files: dict[str, str]) -> str:
    return hashlib.sha256("\0".join(f"{k}\0{v}" for k, v in sorted(files.items())).encode()).hexdigest()


def deployment(namespace: str, replicas: int, files: dict[str, str], sources: dict[str, KeySource]) -> dict[str, Any]:
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(gw.STATIC_ENV.items())]
    env += [{"name": s.env, "valueFrom": {"secretKeyRef": {"name": s.secret, "key": s.key}}}
            for s in sources.values()]

    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "timeoutSeconds": 5,
                "failureThreshold": failures}
    container = {
        "name": "litellm", "image": LITELLM_IMAGE,
        "args": ["--config", f"{CONFIG_DIR}/config.yaml", "--host", "0.0.0.0", "--port", str(PORT)],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": env,
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
        "startupProbe": probe("/health/liveliness", 5, 60),
        "readinessProbe": probe("/health/readiness", 10, 3),
        "livenessProbe": probe("/health/liveliness", 15, 4),
        # let the NLB deregister the pod before the proxy stops taking requests
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "20"]}}},
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": namespace, "labels": LABELS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": LABELS, "annotations": {"llm-fleet/config-sha256": config_hash(files)}},
                "spec": {
                    "containers": [container],
                    "volumes": [{"name": "config", "configMap": {"name": NAME}}],
                    "terminationGracePeriodSeconds": 60,
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 100, "podAffinityTerm": {
                            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
                            "topologyKey": "kubernetes.io/hostname"}}]}},
                },
            },
        },
    }


def service(namespace: str, cfg: StackConfig, managed: bool) -> dict[str, Any]:
    """On EKS a LoadBalancer Service the AWS Load Balancer Controller turns into an NLB: internal unless
    the stack says internet-facing; TLS on 443 with the ACM certificate; only allowedCidrs get in
    (loadBalancerSourceRanges). On an existing cluster a ClusterIP (expose it with your ingress)."""
    g = cfg.gateway
    tls = g.certificate_arn is not None
    port = {"name": "http", "port": 443 if tls else 80, "targetPort": "http", "protocol": "TCP"}
    spec: dict[str, Any] = {"selector": {"app.kubernetes.io/name": NAME}, "ports": [port]}
    # llm-fleet/auth: the policy pack lets only the key-checking gateway behind a load balancer
    metadata: dict[str, Any] = {"name": NAME, "namespace": namespace, "labels": {**LABELS, "llm-fleet/auth": "api-key"}}
    if managed:
        annotations = {"service.beta.kubernetes.io/aws-load-balancer-scheme": g.exposure,
                       "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip"}
        if tls:
            annotations["service.beta.kubernetes.io/aws-load-balancer-ssl-cert"] = g.certificate_arn
            annotations["service.beta.kubernetes.io/aws-load-balancer-ssl-ports"] = "443"
        else:
            # a non-streaming answer can take the whole request timeout with no byte on the wire; the
            # NLB's TCP idle default (350 s) would cut it (listener attribute, 60-6000 s)
            idle = min(6000, max(60, g.request_timeout_seconds + 60))
            annotations["service.beta.kubernetes.io/aws-load-balancer-listener-attributes.TCP-80"] = (
                f"tcp.idle_timeout.seconds={idle}")
        metadata["annotations"] = annotations
        spec.update(type="LoadBalancer", loadBalancerClass="service.k8s.aws/nlb",
                    loadBalancerSourceRanges=list(g.allowed_cidrs))
    else:
        port["port"] = PORT
        spec["type"] = "ClusterIP"
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}


def pod_disruption_budget(namespace: str, replicas: int) -> dict[str, Any]:
    budget = {"maxUnavailable": 1} if replicas > 1 else {"minAvailable": 0}
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": NAME, "namespace": namespace, "labels": LABELS},
            "spec": {**budget, "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}}}}


def in_cluster_url(namespace: str) -> str:
    return f"http://{NAME}.{namespace}.svc.cluster.local:{PORT}"


# ---------------------------------------------------------------------------------------------- ESO manifests

def secret_store(namespace: str, region: str) -> dict[str, Any]:
    """No `auth`: ESO uses its controller's own AWS identity (EKS Pod Identity, controllers.py)."""
    return {"apiVersion": ESO_API, "kind": "SecretStore",
            "metadata": {"name": SECRET_STORE, "namespace": namespace, "labels": LABELS},
            "spec": {"provider": {"aws": {"service": "SecretsManager", "region": region}}}}


def external_secret(namespace: str, name: str, target: str, items: dict[str, str]) -> dict[str, Any]:
    """items: secret key -> Secrets Manager ARN (the secret's plain string value)."""
    return {"apiVersion": ESO_API, "kind": "ExternalSecret",
            "metadata": {"name": name, "namespace": namespace, "labels": LABELS},
            "spec": {"refreshInterval": REFRESH,
                     "secretStoreRef": {"kind": "SecretStore", "name": SECRET_STORE},
                     "target": {"name": target, "creationPolicy": "Owner"},
                     "data": [{"secretKey": key, "remoteRef": {"key": arn}} for key, arn in sorted(items.items())]}}


def password_generator(namespace: str, name: str = GENERATED_SECRET) -> dict[str, Any]:
    return {"apiVersion": GENERATOR_API, "kind": "Password",
            "metadata": {"name": name, "namespace": namespace, "labels": LABELS},
            "spec": {"length": 48, "digits": 8, "symbols": 0, "noUpper": False, "allowRepeat": True}}


def generated_secret(namespace: str, name: str = GENERATED_SECRET, key: str = GENERATED_KEY) -> dict[str, Any]:
    """A Secret `name` holding one random password under `key`, made once (refreshPolicy CreatedOnce) from
    the Password generator of the same name."""
    spec: dict[str, Any] = {"refreshPolicy": "CreatedOnce",
                            "target": {"name": name, "creationPolicy": "Owner"},
                            "dataFrom": [{"sourceRef": {"generatorRef": {"apiVersion": GENERATOR_API,
                                                                         "kind": "Password", "name": name}}}]}
    if key != GENERATED_KEY:
        # the generator's output key is `password`; template it under the key the pods read
        spec["target"]["template"] = {"data": {key: "{{ .password }}"}}
    return {"apiVersion": ESO_API, "kind": "ExternalSecret",
            "metadata": {"name": name, "namespace": namespace, "labels": LABELS}, "spec": spec}
