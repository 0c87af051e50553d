"""Run the real Pulumi program offline under Pulumi's mocks runtime and record every resource.

No credentials, no CLI, no network: the SDK's own mock monitor receives each registration; we answer
with the inputs echoed plus the few outputs AWS would compute (ARNs, endpoints, OIDC issuer), and
record (type, name, parent, inputs) with secrets masked. The same recorder feeds `fleet render`, the
golden files and the program tests.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from infra.stack.document import read_stack_document

SECRET_SIG = "4dabf18193072939515e22adb298388d"
MASK = "[secret]"
ACCOUNT = "123456789012"
PROJECT = "llm-fleet"
MOCK_UNIQUE_ID = "20261202000000000000000001"
# What `aws eks describe-addon-versions --kubernetes-version <v>` lists first (newest) per add-on, as
# the pins in infra.aws.cluster.ADDON_VERSIONS were read; getAddonVersion(mostRecent) answers from it.
EKS_ADDON_NEWEST = {
    "1.33": {"vpc-cni": "v1.20.1-eksbuild.3", "kube-proxy": "v1.33.10-eksbuild.13", "coredns": "v1.12.4-eksbuild.18",
             "eks-pod-identity-agent": "v1.3.10-eksbuild.2", "aws-ebs-csi-driver": "v1.57.1-eksbuild.1"},
    "1.34": {"vpc-cni": "v1.20.1-eksbuild.3", "kube-proxy": "v1.34.6-eksbuild.13", "coredns": "v1.13.2-eksbuild.11",
             "eks-pod-identity-agent": "v1.3.10-eksbuild.2", "aws-ebs-csi-driver": "v1.57.1-eksbuild.1"},
}


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        if SECRET_SIG in value:
            return MASK
        return {k: _mask(v) for k, v in sorted(value.items()) if not k.startswith("__")}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)          # the wire format has one number type: show 2, not 2.0, to reviewers
    return value


def _zone_prefix(region: str) -> str:
    """us-east-1 -> use1, ap-northeast-1 -> apne1 (how AWS names AZ ids)."""
    parts = region.split("-")
    compass = {"east": "e", "west": "w", "north": "n", "south": "s", "central": "c", "northeast": "ne",
               "southeast": "se", "northwest": "nw", "southwest": "sw"}
    return parts[0] + "".join(compass.get(p, p[:1]) for p in parts[1:-1]) + parts[-1]


class CloudRefusal(Exception):
    """What the cloud would answer an invoke with, as an error (`pulumi preview` prints it and stops):
    `fleet render` prints it as one line, like any refusal, instead of a traceback."""


class Recorder:
    """The Mocks implementation: deterministic ids and outputs, and a record of every registration."""

    # (cluster, getNodeGroup result) of node groups that already run (tests set it); empty: a first deploy
    live_groups: tuple[tuple[str, dict[str, Any]], ...] = ()

    def __init__(self, region: str):
        import pulumi

        self.region = region
        self.records: list[dict[str, Any]] = []
        self.parents: dict[tuple[str, str], str] = {}
        self.depends: dict[tuple[str, str], list[str]] = {}
        recorder = self

        class _Mocks(pulumi.runtime.Mocks):
            def new_resource(self, args):
                return recorder.new_resource(args)

            def call(self, args):
                return recorder.call(args)

        class _Monitor(pulumi.runtime.mocks.MockMonitor):
            def RegisterResource(self, request):
                recorder.parents[(request.type, request.name)] = request.parent
                recorder.depends[(request.type, request.name)] = sorted(
                    {urn.rsplit("::", 1)[-1] for urn in request.dependencies})
                return super().RegisterResource(request)

        self.mocks = _Mocks()
        self.monitor = _Monitor(self.mocks)

    # -- resources
    def new_resource(self, args) -> tuple[str, dict]:
        parent = self.parents.get((args.typ, args.name), "")
        top_level = not parent or "::pulumi:pulumi:Stack::" in parent
        self.records.append({"type": args.typ, "name": args.name,
                             "parent": None if top_level else parent.rsplit("::", 1)[-1],
                             "dependsOn": self.depends.get((args.typ, args.name), []),
                             "inputs": _mask(args.inputs)})
        state = dict(args.inputs)
        state.update(self.outputs(args.typ, args.name, args.inputs))
        return f"{args.name}-id", state

    def outputs(self, typ: str, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        region, account = self.region, ACCOUNT
        physical = inputs.get("name") or name
        service = typ.split(":")[1].split("/")[0] if typ.startswith("aws:") else None
        out: dict[str, Any] = {}
        if service:
            out["arn"] = f"arn:aws:{service}:{region}:{account}:{typ.rsplit(':', 1)[-1].lower()}/{physical}"
        if typ == "aws:eks/cluster:Cluster":
            out.update(endpoint=f"https://{physical}.mock.{region}.eks.amazonaws.com",
                       certificateAuthority={"data": "bW9jay1jYQ=="},
                       identities=[{"oidcs": [{"issuer": f"https://oidc.eks.{region}.amazonaws.com/id/MOCK{physical}"}]}],
                       vpcConfig={**(inputs.get("vpcConfig") or {}), "clusterSecurityGroupId": f"sg-{physical}"},
                       name=physical, version=inputs.get("version"))
        elif typ in ("aws:iam/role:Role", "aws:iam/policy:Policy"):
            kind = "role" if typ.endswith("Role") else "policy"
            out.update(arn=f"arn:aws:iam::{account}:{kind}/{physical}", name=physical)
        elif typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            url = str(inputs.get("url", "")).removeprefix("https://")
            out.update(arn=f"arn:aws:iam::{account}:oidc-provider/{url}")
        elif typ == "aws:s3/bucket:Bucket":
            bucket = inputs.get("bucket") or name
            out.update(bucket=bucket, arn=f"arn:aws:s3:::{bucket}",
                       bucketRegionalDomainName=f"{bucket}.s3.amazonaws.com")
        elif typ == "aws:kms/key:Key":
            out.update(keyId=f"{name}-key-id", arn=f"arn:aws:kms:{region}:{account}:key/{name}-key-id")
        elif typ == "aws:ec2/launchTemplate:LaunchTemplate":
            out.update(latestVersion=1, defaultVersion=1)
        elif typ == "aws:eks/nodeGroup:NodeGroup":
            # the provider completes a name prefix with a 26-character unique id (id.PrefixedUniqueId)
            group = inputs.get("nodeGroupName") or f"{inputs.get('nodeGroupNamePrefix', name + '-')}{MOCK_UNIQUE_ID}"
            out.update(nodeGroupName=group, resources=[{"autoscalingGroups": [{"name": f"eks-{group}-asg"}]}],
                       status="ACTIVE")
        elif typ == "aws:ec2/subnet:Subnet":
            out.update(availabilityZoneId=inputs.get("availabilityZoneId") or f"{_zone_prefix(region)}-az1")
        elif typ == "aws:acm/certificate:Certificate":
            out.update(arn=f"arn:aws:acm:{region}:{account}:certificate/{name}")
        return out

    # -- invokes
    def call(self, args) -> dict[str, Any]:
        token = args.token
        prefix = _zone_prefix(self.region)
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/mock", "userId": "MOCK", "id": ACCOUNT}
        if token == "aws:index/getRegion:getRegion":
            return {"name": self.region, "region": self.region, "id": self.region,
                    "endpoint": f"ec2.{self.region}.amazonaws.com", "description": self.region}
        if token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws", "reverseDnsPrefix": "com.amazonaws"}
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            letters = "abcdef"
            return {"names": [f"{self.region}{c}" for c in letters],
                    "zoneIds": [f"{prefix}-az{i + 1}" for i in range(6)],
                    "id": self.region, "groupNames": [self.region] * 6, "state": "available"}
        if token == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
            # every asked type in every AZ id of the region (tests narrow this to exercise the errors)
            types = [v for f in args.args.get("filters") or [] if f.get("name") == "instance-type" for v in f["values"]]
            zones = [f"{prefix}-az{i + 1}" for i in range(6)]
            pairs = [(t, z) for t in types for z in zones]
            return {"id": self.region, "instanceTypes": [t for t, _ in pairs], "locations": [z for _, z in pairs],
                    "locationTypes": ["availability-zone-id"] * len(pairs),
                    "locationType": args.args.get("locationType")}
        if token == "aws:ec2/getSubnet:getSubnet":
            # an existing subnet's AZ id, derived from its id's last hex digit (az1..az6)
            sid = str(args.args.get("id"))
            return {"id": sid, "availabilityZoneId": f"{prefix}-az{int(sid[-1], 16) % 6 + 1}",
                    "availabilityZone": f"{self.region}{'abcdef'[int(sid[-1], 16) % 6]}",
                    "cidrBlock": "10.0.0.0/24", "mapPublicIpOnLaunch": False, "state": "available"}
        if token == "aws:eks/getAddonVersion:getAddonVersion":
            addon, version = args.args.get("addonName"), args.args.get("kubernetesVersion")
            newest = EKS_ADDON_NEWEST.get(version, {}).get(addon)
            if newest is None:   # the provider's answer when DescribeAddonVersions lists nothing
                raise CloudRefusal(f"reading EKS Add-On version info ({addon}, {version}): empty result")
            return {"addonName": addon, "kubernetesVersion": version, "mostRecent": args.args.get("mostRecent"),
                    "version": newest, "id": addon}
        if token == "aws:eks/getClusters:getClusters":
            return {"id": self.region, "names": list(self.live_groups and {c for c, _ in self.live_groups})}
        if token == "aws:eks/getNodeGroups:getNodeGroups":
            cluster = args.args.get("clusterName")
            return {"id": cluster, "clusterName": cluster,
                    "names": [g["nodeGroupName"] for c, g in self.live_groups if c == cluster]}
        if token == "aws:eks/getNodeGroup:getNodeGroup":
            cluster, group = args.args.get("clusterName"), args.args.get("nodeGroupName")
            (found,) = [g for c, g in self.live_groups if c == cluster and g["nodeGroupName"] == group]
            return {"id": f"{cluster}:{group}", "clusterName": cluster, **found}
        if token == "aws:secretsmanager/getSecretVersion:getSecretVersion":
            return {"arn": args.args.get("secretId"), "secretString": MASK, "id": "mock", "versionId": "v1"}
        raise NotImplementedError(f"render has no mock for the invoke {token}; add one in scripts/render.py")


def stack_config(path: Path) -> tuple[str, dict[str, str], list[str]]:
    """A stack file as the engine hands it to the program: strings, JSON for objects; secrets masked."""
    match = re.fullmatch(r"Pulumi\.(.+)\.ya?ml", path.name)
    stack = match.group(1) if match else path.stem
    values: dict[str, str] = {}
    secret_keys: list[str] = []
    # the same reader as `fleet plan`: one refusal, one message, for the file itself
    for key, value in read_stack_document(path).items():
        if isinstance(value, Mapping) and set(value) == {"secure"}:
            values[key] = MASK
            secret_keys.append(key)
        elif isinstance(value, Mapping | list):
            values[key] = json.dumps(value)
        elif isinstance(value, bool):
            values[key] = "true" if value else "false"
        else:
            values[key] = str(value)
    return stack, values, secret_keys


def render(path: Path) -> list[dict[str, Any]]:
    """Run infra.program.build() for the stack file under mocks; the records, sorted for stable diffs."""
    stack, values, secret_keys = stack_config(path)
    return render_values(stack, values, secret_keys, path.parent)


def render_values(stack: str, values: dict[str, str], secret_keys: list[str], stack_dir: Path) -> list[dict[str, Any]]:
    """The same for config given as the engine passes it (strings, JSON for objects)."""
    import pulumi
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    # Each render runs on an event loop of its own: the SDK awaits on the current loop, and whatever ran
    # before in this process (another render, a library that closed its loop) must not leak in.
    loop = asyncio.new_event_loop()
    loop.set_default_executor(_LoopClosingExecutor())
    asyncio.set_event_loop(loop)
    recorder = Recorder(values.get("aws:region", "us-east-1"))
    pulumi.runtime.settings.set_root_resource(None)      # a fresh root Stack for this stack's name
    pulumi.runtime.set_mocks(recorder.mocks, project=PROJECT, stack=stack, preview=False, monitor=recorder.monitor)
    pulumi.runtime.set_all_config(values, secret_keys)
    from infra import program

    pulumi.runtime.settings.SETTINGS.rpc_manager.clear()
    pulumi.runtime.settings.SETTINGS.outputs.clear()    # tasks a refused render left on its (closed) loop
    try:
        _sync_await(run_pulumi_func(lambda: program.build(stack_dir=stack_dir)))
    finally:
        _shut_down(loop)
    return sorted(recorder.records, key=lambda r: (r["type"], r["name"]))


def _shut_down(loop: asyncio.AbstractEventLoop) -> None:
    """Close a render's loop cleanly even when the program stopped half-way (a refusal raised after some
    resources were registered): cancel what is still pending and wait for the executor's calls, or the
    loop's close prints "Task was destroyed but it is pending!" per resource and the next render in this
    process meets callbacks aimed at a closed loop."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()
    asyncio.set_event_loop(None)


class _LoopClosingExecutor(ThreadPoolExecutor):
    """The default executor of a render's loop, where the SDK runs the mock monitor's RPCs. The monitor
    gives each worker thread an event loop of its own (`_ensure_event_loop`) that nothing closes: left
    to the garbage collector at interpreter exit, after its self-pipe sockets, its `__del__` prints
    "Exception ignored ... ValueError: Invalid file descriptor: -1" on the user's terminal. Each call
    here closes the loop it made, in its own thread, before the thread takes the next call."""

    def submit(self, fn, /, *args, **kwargs):
        def call():
            try:
                return fn(*args, **kwargs)
            finally:
                _close_thread_loop()
        return super().submit(call)


def _close_thread_loop() -> None:
    policy = asyncio.get_event_loop_policy()
    try:
        thread_loop = policy.get_event_loop()
    except RuntimeError:            # no loop was made in this thread
        return
    if not thread_loop.is_running():
        thread_loop.close()
    policy.set_event_loop(None)


def to_tree(records: list[dict[str, Any]]) -> str:
    """Readable: each component with its children indented, each line `type name`."""
    children: dict[str | None, list[dict[str, Any]]] = {}
    names = {r["name"] for r in records}
    for record in records:
        parent = record["parent"] if record["parent"] in names else None
        children.setdefault(parent, []).append(record)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for record in sorted(children.get(parent, []), key=lambda r: (r["name"], r["type"])):
            lines.append(f"{'  ' * depth}{record['type']}  {record['name']}")
            walk(record["name"], depth + 1)

    walk(None, 0)
    return "\n".join(lines) + "\n"
