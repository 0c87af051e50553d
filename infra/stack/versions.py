"""What we pin per Kubernetes minor version: the EKS add-ons and the cluster-autoscaler image. Pure, so
`fleet plan` refuses an unpinned version before anything is built; the resource code reads the versions
resolved into `ClusterSpec` (`addon_versions`, `autoscaler_image_tag`), never this table directly.
A stack can run a version this table does not know by pinning them itself (`cluster.addonVersions`,
`cluster.autoscalerImageTag`): the way out of "not pinned" is a stack setting, not a source edit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from infra.stack.reader import ConfigError, Node

# EKS add-on versions per Kubernetes minor version. Sources: the Amazon EKS user guide's version tables
# (managing-kube-proxy, managing-coredns, managing-vpc-cni; snapshots read 2026-08) for kube-proxy,
# coredns and vpc-cni; eks-pod-identity-agent and aws-ebs-csi-driver as pinned for 1.33/1.34 in a CDK
# EKS sample (2026). Check with `aws eks describe-addon-versions --kubernetes-version <v>` when adding one.
ADDON_VERSIONS: dict[str, dict[str, str]] = {
    "1.33": {
        "vpc-cni": "v1.20.1-eksbuild.3",
        "kube-proxy": "v1.33.10-eksbuild.13",
        "coredns": "v1.12.4-eksbuild.18",
        "eks-pod-identity-agent": "v1.3.10-eksbuild.2",
        "aws-ebs-csi-driver": "v1.57.1-eksbuild.1",
    },
    "1.34": {
        "vpc-cni": "v1.20.1-eksbuild.3",
        "kube-proxy": "v1.34.6-eksbuild.13",
        "coredns": "v1.13.2-eksbuild.11",
        "eks-pod-identity-agent": "v1.3.10-eksbuild.2",
        "aws-ebs-csi-driver": "v1.57.1-eksbuild.1",
    },
}
ADDONS = ("vpc-cni", "kube-proxy", "coredns", "eks-pod-identity-agent", "aws-ebs-csi-driver")
# kubernetes/autoscaler: the autoscaler's minor must match the cluster's; tags cluster-autoscaler-1.33.6
# (2026-07-22), cluster-autoscaler-1.34.5.
CA_IMAGE_TAGS = {"1.33": "v1.33.6", "1.34": "v1.34.5"}
ADDON_VERSION = r"v\d+\.\d+\.\d+-eksbuild\.\d+"


def pinned_addons(node: Node, kubernetes_version: str) -> tuple[Mapping[str, str], str]:
    """(add-on -> version, cluster-autoscaler image tag) for a new EKS cluster: the table's pins,
    overridden or completed by `cluster.addonVersions` / `cluster.autoscalerImageTag`."""
    given = node.node("addonVersions")
    overrides = {}
    for addon in list(given.data):
        if addon not in ADDONS:
            raise ConfigError(f"{given.sub(str(addon))}: not an add-on this stack installs; pin one of: "
                              f"{', '.join(ADDONS)}")
        overrides[addon] = given.str(str(addon), required=True, pattern=ADDON_VERSION,
                                     hint="expected an EKS add-on version such as v1.20.1-eksbuild.3 (see `aws eks "
                                     f"describe-addon-versions --kubernetes-version {kubernetes_version}`)")
    given.done()
    versions = {**ADDON_VERSIONS.get(kubernetes_version, {}), **overrides}
    missing = [a for a in ADDONS if a not in versions]
    if missing:
        raise ConfigError(
            f"{node.sub('kubernetesVersion')}: {kubernetes_version!r} has no pinned add-on versions; pinned: "
            f"{', '.join(sorted(ADDON_VERSIONS))}; use one of those, or pin {', '.join(missing)} for "
            f"{kubernetes_version} under {node.sub('addonVersions')} (versions from `aws eks describe-addon-versions "
            f"--kubernetes-version {kubernetes_version}`)")
    tag = node.str("autoscalerImageTag", CA_IMAGE_TAGS.get(kubernetes_version), pattern=r"v\d+\.\d+\.\d+",
                   hint=f"expected a cluster-autoscaler release tag such as v{kubernetes_version}.0")
    if tag is None:
        raise ConfigError(
            f"{node.sub('kubernetesVersion')}: {kubernetes_version!r} has no pinned cluster-autoscaler image; pinned: "
            f"{', '.join(sorted(CA_IMAGE_TAGS))}; use one of those, or set {node.sub('autoscalerImageTag')} to a "
            f"cluster-autoscaler v{kubernetes_version}.x release tag")
    if not re.match(rf"v{re.escape(kubernetes_version)}\.", tag):
        raise ConfigError(f"{node.sub('autoscalerImageTag')}: {tag!r} is not a {kubernetes_version} release; the "
                          f"cluster-autoscaler's minor version must match the cluster's (v{kubernetes_version}.x)")
    return versions, tag
