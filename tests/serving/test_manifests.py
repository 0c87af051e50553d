"""Every Kubernetes object each shipped stack renders, validated as the API server would see it:
core kinds with kubernetes-validate (strict, at the stack's pinned Kubernetes version), custom
resources against the CRD schemas of the pinned charts (tests/fixtures/crds, see SOURCES.md), made
strict the way `kubectl apply --validate=strict` is (unknown fields are errors)."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from infra.planning.placement import fallback_pools
from infra.stack.config import load_stack_file
from scripts.render import MASK
from tests.conftest import render_cached

ROOT = Path(__file__).resolve().parents[2]
STACKS = ("dev", "staging", "prod", "onprem-ascend", "existing-cluster", "gpu-cloud")
CRDS = ROOT / "tests" / "fixtures" / "crds"
NOT_OBJECTS = ("kubernetes:helm.sh/v3:Release",)       # a Helm release, not an API object


def rendered(stack: str) -> tuple:
    return render_cached(str(ROOT / "stacks" / f"Pulumi.{stack}.yaml"))


@functools.cache
def k8s_version(stack: str) -> str:
    return load_stack_file(ROOT / "stacks" / f"Pulumi.{stack}.yaml").cluster.kubernetes_version


def _ints(value: Any) -> Any:
    """The mock monitor carries numbers as doubles; the API server's JSON has integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def manifest(record: dict) -> dict:
    """type token kubernetes:<group>/<version>:<Kind> + inputs -> the object sent to the API server."""
    _, group_version, kind = record["type"].split(":")
    api_version = group_version.removeprefix("core/")
    body = {k: v for k, v in _ints(record["inputs"]).items() if k not in ("apiVersion", "kind")}
    for field in ("data", "stringData"):
        if body.get(field) == MASK:                 # a whole secret map, masked by the recorder
            body[field] = {"masked": MASK}
    return {"apiVersion": api_version, "kind": kind, **body}


def objects(stack: str) -> list[dict]:
    return [manifest(r) for r in rendered(stack)
            if r["type"].startswith("kubernetes:") and r["type"] not in NOT_OBJECTS]


def _strict(schema: Any) -> Any:
    """additionalProperties: false wherever a CRD schema lists properties and keeps no unknown fields."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict]:
    out = {}
    for path in sorted(CRDS.glob("*.json")):
        schema = json.loads(path.read_text())
        group = schema["x-llmfleet-crd"].split(".", 1)[1]
        out[(f"{group}/{schema['x-llmfleet-version']}", schema["x-llmfleet-kind"])] = _strict(schema)
    return out


def is_core(obj: dict) -> bool:
    """Built into the API server: the legacy groups and the *.k8s.io ones (networking.k8s.io, ...)."""
    group = obj["apiVersion"].split("/")[0]
    return (obj["apiVersion"], obj["kind"]) not in crd_schemas() and ("." not in group or group.endswith(".k8s.io"))


def validate(obj: dict, version: str) -> None:
    """Raise on an invalid object (kubernetes_validate.ValidationError / jsonschema.ValidationError)."""
    key = (obj["apiVersion"], obj["kind"])
    if key in crd_schemas():
        jsonschema.Draft7Validator(crd_schemas()[key]).validate(obj)
        # ObjectMeta is `type: object` in a CRD; the API server checks it like any object's
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]},
                                     version, strict=True)
    else:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("stack", STACKS)
def test_every_rendered_object_is_valid(stack):
    version = k8s_version(stack)
    objs = objects(stack)
    assert objs, f"{stack} rendered no Kubernetes object"
    errors = []
    for obj in objs:
        try:
            validate(obj, version)
        except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as err:
            errors.append(f"{obj['kind']} {obj['metadata'].get('name')}: {err.message} at {list(err.absolute_path)}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("stack", STACKS)
def test_every_custom_resource_has_a_pinned_schema(stack):
    custom = {(o["apiVersion"], o["kind"]) for o in objects(stack) if not is_core(o)}
    assert custom <= set(crd_schemas()), custom - set(crd_schemas())


def test_the_serving_kinds_are_all_covered():
    kinds = {(o["apiVersion"], o["kind"]) for s in STACKS for o in objects(s)}
    for expected in (("keda.sh/v1alpha1", "ScaledObject"), ("monitoring.coreos.com/v1", "PodMonitor"),
                     ("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule"),
                     ("external-secrets.io/v1", "ExternalSecret"), ("external-secrets.io/v1", "SecretStore"),
                     ("generators.external-secrets.io/v1alpha1", "Password"), ("apps/v1", "Deployment"),
                     ("policy/v1", "PodDisruptionBudget"), ("v1", "Service"), ("v1", "ConfigMap"),
                     ("networking.k8s.io/v1", "NetworkPolicy")):
        assert expected in kinds, expected


def test_a_leader_worker_set_validates(stack_values):
    """No shipped stack spans nodes per replica; GLM-5.1 BF16 on two 8x H200 nodes does."""
    from infra.planning.catalog import load_catalog
    from infra.planning.plan import build_plan
    from infra.serving import engines
    from infra.stack.config import parse_config

    values = stack_values("prod")
    glm = values["llm-fleet:models"][0]
    glm.update(source="zai-org/GLM-5.1", precision="bf16", maxNodesPerReplica=2, maxContext=65536)
    glm["placements"] = [{"pool": "h200-spot", "replicas": {"min": 0, "max": 1}}]
    cfg = parse_config(values, "prod")
    dep = next(d for d in build_plan(cfg).deployments if d.model == "glm-5-1")
    shape = load_catalog().instance(dep.instance_type)
    spec = engines.EngineSpec(
        name="glm-5-1-h200-spot", namespace="llm-fleet", dep=dep, accelerator="nvidia",
        node_selector={"llm-fleet/pool": "h200-spot"}, vcpus=shape.vcpus, memory_mib=shape.memory_mib,
        gpus_per_node=shape.gpu_count, grace_seconds=660,
        weights=engines.WeightsPlan("nvme", source_uri="s3://b/models/glm-5-1/main/", marker_uri="s3://b/m",
                                    region="us-east-1", service_account="weights-reader", cache_dir="/mnt/x"))
    lws = engines.workload(spec)
    assert lws["kind"] == "LeaderWorkerSet"
    validate(lws, "1.33")
    import llmfleet_policies as pol

    res = {"type": "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet", "name": "lws", "props": lws}
    assert pol.check_engine_pods(res) == [] and pol.check_images_pinned(res) == []
    validate(engines.service(dep.model, "llm-fleet"), "1.33")
    validate(engines.pod_disruption_budget(spec), "1.33")


# ---------------------------------------------------------------------------------------------- proven live

def _one(stack: str, kind: str) -> dict:
    return copy.deepcopy(next(o for o in objects(stack) if o["kind"] == kind))


def test_a_broken_core_object_fails():
    dep = _one("prod", "Deployment")
    validate(dep, "1.33")
    dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"   # unknown field
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(dep, "1.33")
    bad = _one("prod", "Deployment")
    bad["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(bad, "1.33")


def test_a_broken_custom_resource_fails():
    so = _one("prod", "ScaledObject")
    validate(so, "1.33")
    so["spec"]["triggers"][0]["metadata"]["threshold"] = 5          # KEDA metadata values are strings
    with pytest.raises(jsonschema.ValidationError):
        validate(so, "1.33")
    typo = _one("prod", "ScaledObject")
    typo["spec"]["cooldownPeriods"] = 600                            # unknown field
    with pytest.raises(jsonschema.ValidationError):
        validate(typo, "1.33")
    rule = _one("prod", "PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["exprr"] = rule["spec"]["groups"][0]["rules"][0].pop("expr")
    with pytest.raises(jsonschema.ValidationError):
        validate(rule, "1.33")
    meta = _one("prod", "PodMonitor")
    meta["metadata"]["name"] = "Not_A_DNS_Name"
    meta["metadata"]["labelz"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(meta, "1.33")


# ---------------------------------------------------------------------------------------------- per stack

@pytest.mark.parametrize("stack", STACKS)
def test_each_placement_renders_an_engine_scaler_and_route(stack):
    """Per model x pool of the plan: the workload with the planner's arguments, GPU limit, toleration,
    pool selector and a startup budget >= the load estimate; a ScaledObject whose cron windows come
    from the pool schedule; a gateway route to its Service."""
    import yaml

    from infra.planning.plan import build_plan
    from infra.serving import autoscaling, engines

    plan = build_plan(load_stack_file(ROOT / "stacks" / f"Pulumi.{stack}.yaml"))
    cfg = plan.config                   # as the program runs it (`prewarmMinutes: auto` resolved)
    objs = objects(stack)
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objs if "name" in o.get("metadata", {})}
    config = yaml.safe_load(by_name[("ConfigMap", "llm-gateway")]["data"]["config.yaml"])
    routes = {(m["model_name"], m["litellm_params"].get("api_base")) for m in config["model_list"]}
    gpu = engines.ACCELERATORS[cfg.cluster.accelerator]["resource"]
    for dep in plan.deployments:
        name = f"{dep.model}-{dep.pool}"
        kind = "LeaderWorkerSet" if dep.multi_node else "Deployment"
        workload = by_name[(kind, name)]
        tpl = workload["spec"]["template"] if kind == "Deployment" else workload["spec"]["leaderWorkerTemplate"][
            "leaderTemplate"]
        pod = tpl["spec"]
        c = pod["containers"][0]
        args, cmd = list(dep.engine_args), c["command"]
        assert any(cmd[i:i + len(args)] == args for i in range(len(cmd))), cmd   # the planner's args, in order
        assert c["image"] == dep.engine_image
        assert c["resources"]["limits"][gpu] == str(dep.layout.gpus // dep.layout.nodes)
        assert any(t["key"] == engines.ACCELERATORS[cfg.cluster.accelerator]["taint"] for t in pod["tolerations"])
        spread = fallback_pools(cfg, plan.deployments).get((dep.model, dep.pool))
        if spread:          # spot first, on-demand fallback: one workload that may land on either pool
            terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == [dep.pool, *spread]
        else:
            assert pod["nodeSelector"] == cfg.pool(dep.pool).selector
        probe = c["startupProbe"]
        assert probe["failureThreshold"] * probe["periodSeconds"] >= dep.load.probe_seconds
        assert workload["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
        assert ("PodDisruptionBudget", name) in by_name
        # one Service per model over all its placements, and the gateway's one private route to it
        svc = by_name[("Service", f"{dep.model}-engine")]
        assert svc["spec"]["selector"].items() <= tpl["metadata"]["labels"].items()
        assert (dep.model, f"http://{dep.model}-engine.llm-fleet.svc.cluster.local:8000/v1") in routes
        assert [r for r in routes if r[0] == dep.model] == [(dep.model, f"http://{dep.model}-engine.llm-fleet.svc"
                                                                        ".cluster.local:8000/v1")]
        schedule = plan.schedule(dep.pool)             # the schedule the planner settled (gaps merged)
        scaler = by_name.get(("ScaledObject", name))
        if schedule is not None:
            crons = [t["metadata"] for t in scaler["spec"]["triggers"] if t["type"] == "cron"]
            assert crons == [t["metadata"] for t in autoscaling.cron_triggers(schedule, dep)] and crons
            assert all(t["timezone"] == schedule.timezone for t in crons)
        if scaler is not None:
            assert scaler["spec"]["minReplicaCount"] == dep.min_replicas
            assert scaler["spec"]["maxReplicaCount"] == dep.max_replicas
            assert scaler["spec"]["scaleTargetRef"]["kind"] == kind


@pytest.mark.parametrize("stack", STACKS)
def test_rendered_serving_objects_pass_the_policy_pack(stack):
    """The checks of policy/llmfleet_policies.py that judge Kubernetes objects, on what this stack renders."""
    import llmfleet_policies as pol

    problems = []
    for r in rendered(stack):
        if r["parent"] != "serving" and r["type"] != "kubernetes:helm.sh/v3:Release":
            continue
        res = {"type": r["type"], "name": r["name"], "props": _ints(r["inputs"])}
        for check in (pol.check_engine_pods, pol.check_images_pinned, pol.check_helm_chart_pinned,
                      pol.check_exposed_endpoint):
            problems += check(res)
    assert not problems, "\n".join(problems)
