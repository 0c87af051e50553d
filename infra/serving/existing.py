"""The Kubernetes provider for `cluster.existing` stacks: the same serving stack on a cluster someone
else runs (on-prem, another cloud, another team's EKS).

`kubeconfig` is either a path or a secret:
  a path       handed to the provider as given: the provider reads the file when it runs (preview and
               up; it expands a leading `~`, and a relative path is relative to the directory `pulumi`
               runs in, the project root), so the kubeconfig's contents never enter the Pulumi state
               and the rendered stack does not depend on whose machine rendered it.
  pulumiSecret the kubeconfig's text in the stack's secret config (`pulumi config set --secret
               <key> "$(cat kubeconfig)"`), encrypted in the state.
  secretsManager the kubeconfig's text in AWS Secrets Manager, read at deploy time with the deployer's
               credentials and kept as a Pulumi secret.
Server-side apply is on, as for the EKS provider, so fields other controllers own (KEDA's replicas) are
not fought over.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra.runtime import secret_output
from infra.stack.spec import ExistingCluster, SecretRef, StackConfig


def kubeconfig_input(existing: ExistingCluster) -> pulumi.Input[str]:
    """What the provider's `kubeconfig` gets: the path as written, or the kubeconfig text as a secret."""
    source = existing.kubeconfig
    if isinstance(source, SecretRef):
        return secret_output(source)
    return source


def existing_provider(cfg: StackConfig) -> k8s.Provider:
    """The explicit provider every Kubernetes object of a cluster.existing stack uses."""
    existing = cfg.cluster.existing
    if existing is None:
        raise ValueError("existing_provider: the stack has no cluster.existing section")
    return k8s.Provider(
        "existing-cluster",
        kubeconfig=kubeconfig_input(existing),
        context=existing.context,
        enable_server_side_apply=True,
    )
