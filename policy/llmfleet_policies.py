"""llm-fleet guard rails: pure checks over plain dicts, wrapped as pulumi-policy policies.

The checks live in checks_aws.py and checks_k8s.py, their shared helpers in plumbing.py; this module
holds the table of policies (CHECKS) that both the PolicyPack and `fleet diff` read.

Every check takes plain Python data (a resource is a dict with ``type``, ``urn``, ``name``,
``props`` and, for stack checks, ``parent``, ``dependencies``, ``property_dependencies`` as URNs)
and returns violation messages, so tests run the rules without the engine. The wrappers at the end
turn the engine's proxied arguments into that shape. A value the engine cannot know yet (preview of
a resource not created) becomes ``UNKNOWN``: checks skip it, because the same policies run again in
``pulumi up`` with the real values; where skipping would hide something (subnets), an advisory
policy says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from checks_aws import (  # noqa: F401  (re-exported for tests and scripts)
    _PAB_FLAGS,
    check_buckets,
    check_gpu_pool_max_size,
    check_gpu_total,
    check_imdsv2,
    check_nodegroup_subnets,
    check_nodegroup_subnets_unverified,
    check_spot_fallback,
    is_gpu_node_group,
)
from checks_k8s import (  # noqa: F401  (re-exported for tests and scripts)
    _PROBES,
    check_engine_pods,
    check_exposed_endpoint,
    check_helm_chart_pinned,
    check_images_pinned,
    check_internal_lb,
    pod_templates,
)
from plumbing import (  # noqa: F401  (re-exported for tests and scripts)
    ANN_INTERNAL_LEGACY,
    ANN_SCHEME,
    ANN_SSL_CERT,
    ANN_SSL_PORTS,
    BUCKET,
    BUCKET_PAB,
    BUCKET_SSE,
    BUCKET_VERSIONING,
    CRONJOB,
    DEFAULT_MAX_TOTAL_GPUS,
    HELM_RELEASE,
    INGRESS,
    LABEL_AUTH,
    LAUNCH_TEMPLATE,
    LWS,
    NODE_GROUP,
    PACK_NAME,
    SERVICE,
    SUBNET,
    TAG_LARGE_MODELS,
    TEMPLATED_WORKLOADS,
    UNKNOWN,
    Violation,
    _as_int,
    _mapping,
    to_plain,
)
from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

# ---------------------------------------------------------------- policy objects


def resource_from_args(args: ResourceValidationArgs) -> dict[str, Any]:
    """The engine's resource-validation arguments as a plain resource dict."""
    return {"type": args.resource_type, "urn": args.urn, "name": args.name, "props": to_plain(args.props)}


def stack_from_args(args: StackValidationArgs) -> list[dict[str, Any]]:
    """The engine's stack resources as plain dicts, with parent and dependencies as URNs."""
    out = []
    for r in args.resources:
        parent = r.parent.urn if r.parent is not None else getattr(r.opts, "parent", None)
        out.append(
            {
                "type": r.resource_type,
                "urn": r.urn,
                "name": r.name,
                "props": to_plain(r.props),
                "parent": parent,
                "dependencies": [d.urn for d in r.dependencies],
                "property_dependencies": {k: [d.urn for d in v] for k, v in r.property_dependencies.items()},
            }
        )
    return out


def max_total_gpus(config: Mapping[str, Any] | None) -> int:
    value = _as_int(_mapping(config).get("maxTotalGpus"))
    return DEFAULT_MAX_TOTAL_GPUS if value is None else value


def check_gpu_total_from_config(
    resources: list[dict[str, Any]], config: Mapping[str, Any]
) -> list[Violation]:
    """The stack's total max GPUs (sum of maxSize x gpus-per-node) stays within maxTotalGpus."""
    return check_gpu_total(resources, max_total_gpus(config))


def _summary(check: Callable[..., Any]) -> str:
    return (check.__doc__ or check.__name__).strip().splitlines()[0]


def _resource_policy(
    name: str, check, level: EnforcementLevel, severity: Severity
) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in check(resource_from_args(args)):
            report_violation(message, None)

    return ResourceValidationPolicy(
        name=name, description=_summary(check), validate=validate, enforcement_level=level, severity=severity
    )


def _stack_policy(
    name: str,
    check,
    level: EnforcementLevel,
    severity: Severity,
    config_schema: PolicyConfigSchema | None = None,
) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = stack_from_args(args)
        found = check(resources, args.get_config()) if config_schema else check(resources)
        for violation in found:
            report_violation(violation.message, violation.urn)

    return StackValidationPolicy(
        name=name,
        description=_summary(check),
        validate=validate,
        enforcement_level=level,
        severity=severity,
        config_schema=config_schema,
    )


_GPU_CAP_SCHEMA = PolicyConfigSchema(
    properties={
        "maxTotalGpus": {
            "type": "integer",
            "minimum": 1,
            "default": DEFAULT_MAX_TOTAL_GPUS,
            "description": "Upper bound on sum(maxSize x gpus-per-node) over the stack's GPU node groups.",
        }
    }
)
_M, _A, _S = EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY, Severity

# One table: the PolicyPack below and `fleet diff`'s offline verdicts (scripts/policy_check.py) both
# read it, so a PR shows the same verdicts the engine will enforce. (id, check, kind, level, severity)
CHECKS = [
    ("llmfleet-gpu-pool-max-size", check_gpu_pool_max_size, "resource", _M, _S.HIGH),
    ("llmfleet-gpu-total-cap", check_gpu_total_from_config, "stack-config", _M, _S.HIGH),
    ("llmfleet-spot-on-demand-fallback", check_spot_fallback, "stack", _M, _S.HIGH),
    ("llmfleet-s3-encrypted-versioned-private", check_buckets, "stack", _M, _S.CRITICAL),
    ("llmfleet-exposed-endpoint-tls-auth", check_exposed_endpoint, "resource", _M, _S.CRITICAL),
    ("llmfleet-internal-lb-tls", check_internal_lb, "resource", _A, _S.LOW),
    ("llmfleet-images-pinned", check_images_pinned, "resource", _M, _S.MEDIUM),
    ("llmfleet-helm-chart-pinned", check_helm_chart_pinned, "resource", _M, _S.MEDIUM),
    ("llmfleet-engine-probes-gpu", check_engine_pods, "resource", _M, _S.HIGH),
    ("llmfleet-imdsv2-required", check_imdsv2, "resource", _M, _S.HIGH),
    ("llmfleet-nodegroup-private-subnets", check_nodegroup_subnets, "stack", _M, _S.HIGH),
    ("llmfleet-nodegroup-subnets-unverified", check_nodegroup_subnets_unverified, "stack", _A, _S.LOW),
]

POLICIES = [
    _resource_policy(pid, check, level, severity) if kind == "resource"
    else _stack_policy(pid, check, level, severity, _GPU_CAP_SCHEMA if kind == "stack-config" else None)
    for pid, check, kind, level, severity in CHECKS
]

POLICY_IDS = [p.name for p in POLICIES]
