"""Kubernetes-side checks: exposed endpoints carry TLS and the gateway's auth, images and charts are
pinned, engine pods have probes and GPU limits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from plumbing import (
    _ACM_ARN,
    _DIGEST,
    _PINNED_CHART,
    ANN_INTERNAL_LEGACY,
    ANN_SCHEME,
    ANN_SSL_CERT,
    ANN_SSL_PORTS,
    CRONJOB,
    GPU_RESOURCES,
    HELM_RELEASE,
    INGRESS,
    LABEL_AUTH,
    LABEL_ROLE,
    LWS,
    POD,
    SERVICE,
    TEMPLATED_WORKLOADS,
    UNKNOWN,
    _items,
    _mapping,
    dig,
)

# ---------------------------------------------------------------- 4. exposed endpoints: TLS and auth


def _tls_and_auth_problems(props: Mapping[str, Any]) -> list[str]:
    annotations = dig(props, "metadata", "annotations")
    labels = dig(props, "metadata", "labels")
    out = []
    if annotations is not UNKNOWN:
        cert = _mapping(annotations).get(ANN_SSL_CERT)
        if cert is not UNKNOWN and not (isinstance(cert, str) and _ACM_ARN.match(cert)):
            out.append(f"annotation {ANN_SSL_CERT} is {cert!r}, not an ACM certificate ARN")
        ports = _mapping(annotations).get(ANN_SSL_PORTS)
        if ports is not UNKNOWN and not (isinstance(ports, str) and ports.strip()):
            out.append(f"annotation {ANN_SSL_PORTS} is missing")
    if labels is not UNKNOWN and _mapping(labels).get(LABEL_AUTH) not in ("api-key", UNKNOWN):
        out.append(f"label {LABEL_AUTH}: api-key is missing (only the key-checking gateway may be exposed)")
    return out


def _is_load_balancer(res: Mapping[str, Any]) -> bool:
    return res.get("type") == SERVICE and dig(res, "props", "spec", "type") == "LoadBalancer"


def _is_internal(res: Mapping[str, Any]) -> bool:
    annotations = _mapping(dig(res, "props", "metadata", "annotations"))
    # the in-tree controller's older spelling still works and means the same
    return annotations.get(ANN_SCHEME) == "internal" or annotations.get(ANN_INTERNAL_LEGACY) == "true"


def check_exposed_endpoint(res: Mapping[str, Any]) -> list[str]:
    """Internet-facing LoadBalancer Services and all Ingresses carry TLS and the gateway's auth label."""
    props = _mapping(res.get("props"))
    if _is_load_balancer(res) and not _is_internal(res):
        problems = _tls_and_auth_problems(props)
        return [
            f"LoadBalancer Service {res.get('name')}: {p}. Fix: expose only the API gateway, with "
            f"{ANN_SSL_CERT}=<ACM ARN>, {ANN_SSL_PORTS}=443 and label {LABEL_AUTH}: api-key; or make it "
            f"internal ({ANN_SCHEME}: internal)."
            for p in problems
        ]
    if res.get("type") == INGRESS:
        out = []
        tls = dig(props, "spec", "tls")
        if tls is not UNKNOWN and not _items(tls):
            out.append(
                f"Ingress {res.get('name')} has no spec.tls. Fix: add spec.tls with the host and its secret."
            )
        labels = dig(props, "metadata", "labels")
        if labels is not UNKNOWN and _mapping(labels).get(LABEL_AUTH) not in ("api-key", UNKNOWN):
            out.append(
                f"Ingress {res.get('name')} lacks label {LABEL_AUTH}: api-key. Fix: route only to the "
                "API gateway, which enforces keys, and label the Ingress accordingly."
            )
        return out
    return []


def check_internal_lb(res: Mapping[str, Any]) -> list[str]:
    """Advisory: an internal load balancer without TLS (or the auth label) is allowed, but noted."""
    if not (_is_load_balancer(res) and _is_internal(res)):
        return []
    return [
        f"Internal LoadBalancer Service {res.get('name')}: {p}. Allowed inside the VPC. Fix: add TLS and "
        "the label anyway if traffic crosses accounts or peered networks."
        for p in _tls_and_auth_problems(_mapping(res.get("props")))
    ]


# ---------------------------------------------------------------- 5. and 6. workloads


def pod_templates(res: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(where, pod template with metadata/spec) for every pod a workload resource creates."""
    rtype, props = res.get("type"), _mapping(res.get("props"))
    if rtype in TEMPLATED_WORKLOADS:
        found = [("spec.template", dig(props, "spec", "template"))]
    elif rtype == CRONJOB:
        found = [("spec.jobTemplate.spec.template", dig(props, "spec", "jobTemplate", "spec", "template"))]
    elif rtype == LWS:
        lwt = dig(props, "spec", "leaderWorkerTemplate")
        found = [
            ("leaderTemplate", dig(lwt, "leaderTemplate")),
            ("workerTemplate", dig(lwt, "workerTemplate")),
        ]
    elif rtype == POD:
        found = [("pod", props)]
    else:
        return []
    return [(where, t) for where, t in found if isinstance(t, Mapping)]


def image_pin_problem(image: Any) -> str | None:
    """None when the image has a digest or an explicit tag other than latest."""
    if image is UNKNOWN:
        return None
    if not isinstance(image, str) or not image.strip():
        return "has no image"
    if "@" in image:
        return None if _DIGEST.match(image.split("@", 1)[1]) else "has a malformed digest"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    if not tag:
        return "has no tag (it would pull :latest)"
    if tag.lower() == "latest":
        return "uses the mutable :latest tag"
    return None


def check_images_pinned(res: Mapping[str, Any]) -> list[str]:
    """Every container and init container image is pinned by tag (not latest) or digest."""
    out = []
    for where, template in pod_templates(res):
        spec = _mapping(template.get("spec"))
        for field in ("initContainers", "containers"):
            for c in _items(spec.get(field)):
                image = dig(c, "image")
                problem = image_pin_problem(image)
                if problem:
                    out.append(
                        f"{res.get('name')} {where} {field[:-1]} {dig(c, 'name')!r}: image {image!r} "
                        f"{problem}. Fix: pin an explicit version tag or an @sha256 digest."
                    )
    return out


def check_helm_chart_pinned(res: Mapping[str, Any]) -> list[str]:
    """A Helm release names an exact chart version."""
    if res.get("type") != HELM_RELEASE:
        return []
    version = dig(res, "props", "version")
    if version is UNKNOWN or (isinstance(version, str) and _PINNED_CHART.match(version.strip())):
        return []
    return [
        f"Helm release {res.get('name')} has chart version {version!r}. Fix: set version to an exact "
        'chart release (e.g. "2.17.0"), not empty, a range or latest.'
    ]


_PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def _gpu_limit(container: Mapping[str, Any]) -> bool:
    limits = dig(container, "resources", "limits")
    return isinstance(limits, Mapping) and any(
        key in limits and limits[key] not in (0, "0", None) for key in GPU_RESOURCES
    )


def check_engine_pods(res: Mapping[str, Any]) -> list[str]:
    """GPU containers have startup, readiness and liveness probes; engine pods ask for a GPU."""
    out = []
    for where, template in pod_templates(res):
        containers = dig(template, "spec", "containers")
        if containers is UNKNOWN:
            continue
        gpu = [c for c in _items(containers) if isinstance(c, Mapping) and _gpu_limit(c)]
        for c in gpu:
            missing = [p for p in _PROBES if not c.get(p)]
            if missing:
                out.append(
                    f"{res.get('name')} {where} GPU container {c.get('name')!r} has no {', '.join(missing)}. "
                    "Fix: add all three probes; size the startup probe for the weight load time (tens of "
                    "minutes for big models)."
                )
        role = dig(template, "metadata", "labels", LABEL_ROLE)
        if role == "engine" and not gpu:
            out.append(
                f"{res.get('name')} {where} is labelled {LABEL_ROLE}: engine but no container has a "
                f"resources.limits entry for {' or '.join(GPU_RESOURCES)}. Fix: set the GPU limit so the pod "
                "lands on a GPU node and gets its devices."
            )
    return out
