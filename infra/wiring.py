"""What components hand each other: small frozen records, so a component never reaches into another."""

from __future__ import annotations

from dataclasses import dataclass

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
    ready: tuple[pulumi.Resource, ...] = ()   # what must exist first (node pools and their controllers)

    def opts(self, parent: pulumi.Resource, *depends: pulumi.Resource) -> pulumi.ResourceOptions:
        """Options for a Kubernetes child: parent, the explicit provider, after the namespace and `ready`."""
        return pulumi.ResourceOptions(parent=parent, provider=self.provider,
                                      depends_on=[self.namespace_resource, *self.ready, *depends])


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

    def marker_key(self, model: str, revision: str) -> str:
        """The object the copy Job writes last, after every file matched the hub's sha256."""
        return f"{self.prefix(model, revision)}.llm-fleet-complete"
