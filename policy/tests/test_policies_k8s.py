"""The Kubernetes checks: exposed endpoints, pinned images and charts, engine probes and GPU limits."""

from __future__ import annotations

import pytest
from policy_helpers import UNKNOWN, lp, one, res

# ---------------------------------------------------------------- 4. exposed endpoints

CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0f1e2d3c-aaaa-bbbb-cccc-123456789abc"


def service(name, *, lb=True, cert=CERT, ports="443", auth="api-key", scheme=None):
    annotations = {}
    if cert is not None:
        annotations[lp.ANN_SSL_CERT] = cert
    if ports is not None:
        annotations[lp.ANN_SSL_PORTS] = ports
    if scheme:
        annotations[lp.ANN_SCHEME] = scheme
    labels = {"app": name} | ({lp.LABEL_AUTH: auth} if auth else {})
    spec = {"type": "LoadBalancer" if lb else "ClusterIP", "ports": [{"port": 443}]}
    return res(lp.SERVICE, name, {"metadata": {"annotations": annotations, "labels": labels}, "spec": spec})


def test_gateway_load_balancer_with_tls_and_auth_passes():
    assert lp.check_exposed_endpoint(service("gateway")) == []
    assert lp.check_exposed_endpoint(service("gateway", cert=UNKNOWN)) == []  # ARN from ACM, in preview
    assert lp.check_exposed_endpoint(service("engine", lb=False, cert=None, ports=None, auth=None)) == []


def test_load_balancer_without_tls_fails():
    found = lp.check_exposed_endpoint(service("engine", cert=None, ports=None))
    assert len(found) == 2
    assert lp.ANN_SSL_CERT in found[0] and lp.ANN_SSL_PORTS in found[1]
    assert all("Fix:" in m for m in found)


def test_load_balancer_without_auth_label_fails():
    one(lp.check_exposed_endpoint(service("engine", auth=None)), "llm-fleet/auth: api-key", "engine")


def test_load_balancer_with_a_non_acm_cert_fails():
    one(lp.check_exposed_endpoint(service("gateway", cert="arn:aws:iam::1:server-certificate/x")), "ACM")


def test_internal_load_balancer_without_tls_is_only_advisory():
    internal = service("metrics", cert=None, ports=None, auth=None, scheme="internal")
    assert lp.check_exposed_endpoint(internal) == []
    advisories = lp.check_internal_lb(internal)
    assert len(advisories) == 3
    assert all("Internal LoadBalancer Service metrics" in m and "Fix:" in m for m in advisories)
    assert lp.check_internal_lb(service("metrics", scheme="internal")) == []
    legacy = service("metrics", cert=None, ports=None)
    legacy["props"]["metadata"]["annotations"][lp.ANN_INTERNAL_LEGACY] = "true"
    assert lp.check_exposed_endpoint(legacy) == [] and len(lp.check_internal_lb(legacy)) == 2
    assert lp.check_internal_lb(service("gateway")) == []


def ingress(name, *, tls=True, auth="api-key"):
    spec = {"rules": [{"host": "llm.example.com"}]} | (
        {"tls": [{"hosts": ["llm.example.com"]}]} if tls else {}
    )
    labels = {lp.LABEL_AUTH: auth} if auth else {}
    return res(lp.INGRESS, name, {"metadata": {"labels": labels}, "spec": spec})


def test_ingress_with_tls_and_auth_passes():
    assert lp.check_exposed_endpoint(ingress("gateway")) == []


def test_ingress_without_tls_fails():
    one(lp.check_exposed_endpoint(ingress("gateway", tls=False)), "Ingress gateway has no spec.tls")


def test_ingress_without_auth_label_fails():
    one(
        lp.check_exposed_endpoint(ingress("grafana", auth=None)), "Ingress grafana lacks label llm-fleet/auth"
    )


# ---------------------------------------------------------------- 5. pinned images and charts

VLLM = "vllm/vllm-openai:v0.19.0"
DIGEST = "public.ecr.aws/x/y@sha256:" + "ab" * 32


def container(name="engine", image=VLLM, gpu=0, probes=True, gpu_key="nvidia.com/gpu"):
    c = {"name": name, "image": image}
    if gpu:
        c["resources"] = {"limits": {gpu_key: gpu}}
    if probes:
        c |= {p: {"httpGet": {"path": "/health", "port": 8000}} for p in lp._PROBES}
    return c


def pod(*containers, init=(), labels=None):
    return {
        "metadata": {"labels": labels or {}},
        "spec": {"containers": list(containers), "initContainers": list(init)},
    }


def deployment(*containers, init=(), labels=None, kind="kubernetes:apps/v1:Deployment"):
    return res(kind, "gateway", {"spec": {"template": pod(*containers, init=init, labels=labels)}})


def lws(leader, worker):
    return res(
        lp.LWS,
        "glm",
        {"spec": {"leaderWorkerTemplate": {"leaderTemplate": leader, "workerTemplate": worker}}},
    )


def test_pinned_tags_and_digests_pass():
    d = deployment(
        container(image=VLLM),
        container("side", image=DIGEST),
        init=[container("dl", "amazon/aws-cli:2.27.1")],
    )
    assert lp.check_images_pinned(d) == []
    assert lp.check_images_pinned(deployment(container(image=UNKNOWN))) == []
    assert lp.check_images_pinned(lws(pod(container()), pod(container(image=DIGEST)))) == []


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("nginx", "has no tag"),
        ("registry.local:5000/team/engine", "has no tag"),
        ("vllm/vllm-openai:latest", ":latest"),
        ("public.ecr.aws/x/y@sha256:abc", "malformed digest"),
    ],
)
def test_unpinned_images_fail(image, problem):
    one(lp.check_images_pinned(deployment(container(image=image))), problem, "'engine'", image)


def test_unpinned_init_container_fails():
    d = deployment(container(), init=[container("fetch", "amazon/aws-cli")])
    one(lp.check_images_pinned(d), "initContainer 'fetch'")


def test_every_workload_kind_is_read():
    bad = container(image="busybox:latest")
    cron = res(lp.CRONJOB, "sweep", {"spec": {"jobTemplate": {"spec": {"template": pod(bad)}}}})
    one(lp.check_images_pinned(cron), "spec.jobTemplate.spec.template")
    one(lp.check_images_pinned(lws(pod(container()), pod(bad))), "workerTemplate")
    for kind in sorted(lp.TEMPLATED_WORKLOADS):
        one(lp.check_images_pinned(deployment(bad, kind=kind)), "busybox:latest")


def test_helm_release_with_exact_version_passes():
    assert (
        lp.check_helm_chart_pinned(res(lp.HELM_RELEASE, "keda", {"chart": "keda", "version": "2.17.0"})) == []
    )


@pytest.mark.parametrize("version", [None, "", "^2.17", "latest", "2.x"])
def test_helm_release_without_exact_version_fails(version):
    props = {"chart": "keda"} | ({} if version is None else {"version": version})
    one(lp.check_helm_chart_pinned(res(lp.HELM_RELEASE, "keda", props)), "Helm release keda")


# ---------------------------------------------------------------- 6. engine probes and GPU limits


def test_gpu_containers_with_probes_pass():
    engine = {"llm-fleet/role": "engine"}
    leader = pod(container(gpu=8), labels=engine)
    worker = pod(container(gpu="8", gpu_key="huawei.com/Ascend910"), labels=engine)
    assert lp.check_engine_pods(lws(leader, worker)) == []
    assert lp.check_engine_pods(deployment(container("gateway", probes=False))) == []


def test_gpu_container_without_probes_fails():
    gpu_pod = pod(container(gpu=8), container("worker", gpu=8, probes=False))
    one(lp.check_engine_pods(lws(gpu_pod, pod())), "GPU container 'worker'", "startupProbe, readinessProbe")


def test_engine_pod_without_gpu_limit_fails():
    d = deployment(container(probes=False), labels={"llm-fleet/role": "engine"})
    one(lp.check_engine_pods(d), "llm-fleet/role: engine", "nvidia.com/gpu")


