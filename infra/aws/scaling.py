"""The desired size Pulumi sends for a node group, read against what runs now.

Desired size belongs to cluster-autoscaler (docs/capacity.md); Pulumi and the jobs declare min and max.
With `ignore_changes` on `scalingConfig.desiredSize` the engine does not drop the field: it puts the
value from its state (the creation-time size, or the last refresh) back into the inputs, and the
provider sends the whole `scalingConfig` block, all three sizes, to UpdateNodegroupConfig whenever min
or max change (terraform-provider-aws aws_eks_node_group update; reported in terraform-aws-eks#748,
/work/shared/FACTS.md). So raising min above that stale size is refused by EKS
(desired < min), and lowering max sends the stale size, which shrinks a group the autoscaler grew.

What we do instead: read the group's live scaling config while the program is built (invokes, like the
AZ offerings; nothing on a first deploy), and
- when the stack file's min/max equal the live ones, no scaling update is sent: keep ignoring the
  desired size (the autoscaler owns it, no spurious diff);
- when they differ, an update is sent anyway: stop ignoring it for this run and send the live desired
  size clamped into the new [min, max]. It is valid, and never below what runs now unless max itself is
  lowered below it (the user's explicit bound, shown in the preview).
A replacement node group (create-before-delete) starts at the old group's live size the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi_aws as aws

from infra.stack import names

DESIRED_SIZE_PATH = "scalingConfig.desiredSize"


def field(obj, name: str, camel: str | None = None):
    """An attribute of a nested output value: a typed output object in a real run, a plain dict under
    the SDK's mocks (output types subclass dict, so test for a plain dict exactly)."""
    if type(obj) is dict:
        return obj.get(camel or name, obj.get(name))
    return getattr(obj, name)


@dataclass(frozen=True)
class LiveScaling:
    min_size: int
    max_size: int
    desired_size: int


@dataclass(frozen=True)
class ScalingInputs:
    desired_size: int
    ignore_desired: bool                      # put scalingConfig.desiredSize in ignore_changes

    @property
    def ignore_changes(self) -> list[str]:
        return [DESIRED_SIZE_PATH] if self.ignore_desired else []


def scaling_inputs(min_size: int, max_size: int, configured_desired: int, live: LiveScaling | None) -> ScalingInputs:
    """The desired size to declare and whether Pulumi should ignore it (see the module docstring)."""
    if live is None:
        return ScalingInputs(configured_desired, True)        # created at the stack file's size
    desired = min(max(live.desired_size, min_size), max_size)
    if (live.min_size, live.max_size) == (min_size, max_size):
        return ScalingInputs(desired, True)
    return ScalingInputs(desired, False)


def live_scaling(cluster_name: str) -> Mapping[str, LiveScaling]:
    """Pool -> live scaling config of its node group (found by the `TAG_POOL` tag); empty before the
    cluster exists. Two groups of one pool (a replacement in flight) report the larger."""
    if cluster_name not in (aws.eks.get_clusters().names or []):
        return {}
    found: dict[str, LiveScaling] = {}
    for group_name in aws.eks.get_node_groups(cluster_name=cluster_name).names or []:
        group = aws.eks.get_node_group(cluster_name=cluster_name, node_group_name=group_name)
        pool = (group.tags or {}).get(names.TAG_POOL)
        if pool is None or not group.scaling_configs:
            continue
        sc = group.scaling_configs[0]
        live = LiveScaling(int(field(sc, "min_size", "minSize")), int(field(sc, "max_size", "maxSize")),
                           int(field(sc, "desired_size", "desiredSize")))
        if pool not in found or live.desired_size > found[pool].desired_size:
            found[pool] = live
    return found
