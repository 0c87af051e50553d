"""What components hand each other: small frozen records, so a component never reaches into another."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s


@dataclass(frozen=True)
class KubeTarget:
    """Where Kubernetes objects go: the one explicit provider, the project namespace, and the cluster kind."""
    provider: k8s.Provider
    namespace: pulumi.Output[str]
    namespace_resource: k8s.core.v1.Namespace
    managed: bool                      # True: the EKS cluster this program made; False: cluster.existing
    cluster_name: pulumi.Output[str] | None = None
    ready: tuple[pulumi.Resource, ...] = ()   # what must exist first (the controllers serving relies on)
    # per pool, what its engine pods need besides `ready` (its node group): a model waits on its own
    # pools only, never on every pool (a slow p5en group must not hold up unrelated models)
    pools: Mapping[str, tuple[pulumi.Resource, ...]] = field(default_factory=dict)

    def opts(self, parent: pulumi.Resource, *depends: pulumi.Resource) -> pulumi.ResourceOptions:
        """Options for a Kubernetes child: parent, the explicit provider, after the namespace and `ready`."""
        return pulumi.ResourceOptions(parent=parent, provider=self.provider,
                                      depends_on=[self.namespace_resource, *self.ready, *depends])

    def pool_opts(self, parent: pulumi.Resource, pool: str, *depends: pulumi.Resource) -> pulumi.ResourceOptions:
        """`opts` for what runs on a pool's nodes: also after that pool's own node group."""
        return self.opts(parent, *self.pools.get(pool, ()), *depends)


@dataclass(frozen=True)
class WeightsSource:
    """Where engines read weights from (the stack's S3 bucket) and who may read them."""
    bucket_name: pulumi.Output[str]
    reader_service_account: str        # Kubernetes service account bound to the read-only role
    region: str

    def prefix(self, model: str, revision: str) -> str:
        return f"models/{model}/{revision}/"

    def uri(self, model: str, revision: str) -> pulumi.Output[str]:
        return pulumi.Output.concat("s3://", self.bucket_name, "/", self.prefix(model, revision))

    def cache_prefix(self, model: str, revision: str) -> str:
        """Where serving pods save and restore the engine's compile caches for a model revision."""
        return f"compile-cache/{model}/{revision}/"

    def cache_uri(self, model: str, revision: str, image: str) -> pulumi.Output[str]:
        """Per engine image too: compiled kernels are only valid for the engine build that made them."""
        tag = "".join(c if c.isalnum() or c in ".-_" else "-" for c in image)
        return pulumi.Output.concat("s3://", self.bucket_name, "/", self.cache_prefix(model, revision), tag, "/")

    def marker_key(self, model: str, revision: str) -> str:
        """The object the copy Job writes last, after every file matched the hub's sha256."""
        return f"{self.prefix(model, revision)}.llm-fleet-complete"
