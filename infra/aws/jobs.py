"""Where the cost jobs run with exactly the permissions they need: an IAM role that GitHub Actions
assumes through OIDC (the scheduled workflow) and, optionally, Kubernetes CronJobs on the system
nodes with their own service account (IRSA) when nobody's CI should be in the loop."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.aws.cluster import Cluster, iam_name, irsa_trust_policy
from infra.runtime import stack_document
from infra.stack import names
from infra.stack.spec import StackConfig
from infra.wiring import KubeTarget

SERVICE_ACCOUNT = "fleet-jobs"
STACK_DIR = "/etc/llm-fleet"
# Run the job; its exit 3 means another run holds the stack's lock and does the work: a skip.
SKIP_WHEN_LOCKED = '"$@"; rc=$?; if [ "$rc" -eq 3 ]; then exit 0; fi; exit "$rc"'


def jobs_policy(cfg: StackConfig, partition: str, account: str, bucket: str, key_arn: str) -> dict:
    """Least privilege for `fleet status/scale/reconcile/sweep/capacity` (see docs/jobs.md)."""
    cluster = names.cluster_name(cfg)
    region = cfg.region
    statements = [
        {"Sid": "NodeGroups", "Effect": "Allow",
         "Action": ["eks:DescribeNodegroup", "eks:UpdateNodegroupConfig", "eks:TagResource", "eks:UntagResource"],
         "Resource": f"arn:{partition}:eks:{region}:{account}:nodegroup/{cluster}/*/*"},
        # node groups are found by their pool tag, not by name (generated names)
        {"Sid": "ListNodeGroups", "Effect": "Allow", "Action": ["eks:ListNodegroups"],
         "Resource": f"arn:{partition}:eks:{region}:{account}:cluster/{cluster}"},
        {"Sid": "Lock", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
         "Resource": f"arn:{partition}:s3:::{bucket}/{names.lock_key(cfg.stack)}"},
        {"Sid": "Deployed", "Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": f"arn:{partition}:s3:::{bucket}/{names.deployed_key(cfg.stack)}"},
        {"Sid": "LockKey", "Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": key_arn},
        # `fleet sweep` notes spot pools that fell back to on-demand; Describe* takes no resource scoping
        {"Sid": "Instances", "Effect": "Allow", "Action": ["ec2:DescribeInstances"], "Resource": "*",
         "Condition": {"StringEquals": {"aws:RequestedRegion": region}}},
    ]
    if any(p.capacity == "capacity-block" for p in cfg.pools):
        # Reading offerings only: buying a block is not refundable, so `fleet capacity --purchase`
        # runs with an operator's own credentials, never with this scheduled role.
        statements.append({"Sid": "CapacityBlocksRead", "Effect": "Allow",
                           "Action": ["ec2:DescribeCapacityBlockOfferings", "ec2:DescribeCapacityReservations"],
                           "Resource": "*", "Condition": {"StringEquals": {"aws:RequestedRegion": region}}})
    return {"Version": "2012-10-17", "Statement": statements}


def github_trust_policy(provider_arn: str, repo: str) -> dict:
    """Only workflows of `repo` running on its default branch (the schedule and manual dispatch)."""
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": provider_arn}, "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {
            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            "token.actions.githubusercontent.com:sub": f"repo:{repo}:ref:refs/heads/main"}}}]}


def in_cluster_prometheus(cfg: StackConfig) -> str | None:
    """Where in-cluster jobs read engine load: the stack's choice, else the Prometheus this stack installs
    (kube-prometheus-stack's Service), else the existing one monitoring names."""
    if cfg.jobs.prometheus_url:
        return cfg.jobs.prometheus_url
    if cfg.monitoring.prometheus == "install":
        return names.PROMETHEUS_URL
    return cfg.monitoring.prometheus_url


class FleetJobs(pulumi.ComponentResource):
    github_role_arn: pulumi.Output[str] | None

    def __init__(self, name: str, cfg: StackConfig, cluster: Cluster, kube: KubeTarget,
                 bucket_name: pulumi.Output[str], key_arn: pulumi.Output[str], account_id: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmfleet:jobs:FleetJobs", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = names.tags(cfg, "jobs")
        policy = pulumi.Output.all(cluster.partition, account_id, bucket_name, key_arn).apply(
            lambda a: json.dumps(jobs_policy(cfg, a[0], a[1], a[2], a[3])))
        self.github_role_arn = None
        if cfg.jobs.github_oidc_provider_arn:
            role = aws.iam.Role(
                f"{name}-github", name=iam_name(names.cluster_name(cfg), "fleet-jobs-github"),
                assume_role_policy=json.dumps(github_trust_policy(cfg.jobs.github_oidc_provider_arn,
                                                                  cfg.jobs.github_repo)),
                max_session_duration=3600, tags=tags, opts=child)
            aws.iam.RolePolicy(f"{name}-github", role=role.id, policy=policy, opts=child)
            self.github_role_arn = role.arn
        # the stack as this deploy applied it: the scheduled jobs read it (`--deployed`), so a change
        # merged on main but not yet deployed (or not approved) is never acted on
        aws.s3.BucketObjectv2(f"{name}-deployed", bucket=bucket_name, key=names.deployed_key(cfg.stack),
                              content=stack_document(), content_type="application/yaml", tags=tags, opts=child)
        if cfg.jobs.in_cluster:
            self._in_cluster(name, cfg, cluster, kube, policy, tags)
        self.register_outputs({"github_role_arn": self.github_role_arn})

    def _in_cluster(self, name: str, cfg: StackConfig, cluster: Cluster, kube: KubeTarget,
                    policy: pulumi.Output[str], tags: dict[str, str]) -> None:
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-irsa", name=iam_name(names.cluster_name(cfg), "fleet-jobs"),
            assume_role_policy=irsa_trust_policy(cluster.oidc_provider_arn, cluster.oidc_issuer, names.NAMESPACE,
                                                 SERVICE_ACCOUNT),
            tags=tags, opts=child)
        aws.iam.RolePolicy(f"{name}-irsa", role=role.id, policy=policy, opts=child)
        kopts = kube.opts(self)
        k8s.core.v1.ServiceAccount(f"{name}-sa", metadata=k8s.meta.v1.ObjectMetaArgs(
            name=SERVICE_ACCOUNT, namespace=kube.namespace, annotations={"eks.amazonaws.com/role-arn": role.arn}),
            opts=kopts)
        stack_file = f"Pulumi.{cfg.stack}.yaml"
        config_map = k8s.core.v1.ConfigMap(f"{name}-stack", metadata=k8s.meta.v1.ObjectMetaArgs(
            name="fleet-jobs-stack", namespace=kube.namespace), data={stack_file: stack_document()}, opts=kopts)
        for job, schedule in (("reconcile", cfg.jobs.reconcile_cron), ("sweep", cfg.jobs.sweep_cron)):
            argv = ["fleet", job, "--stack-file", f"{STACK_DIR}/{stack_file}"]
            prometheus = in_cluster_prometheus(cfg)
            if prometheus and job == "sweep":         # reconcile needs no metrics: the preStop drains
                argv += ["--prometheus-url", prometheus]
            # exit 3: another run holds the stack's lock; that run does the work, so this one is a skip
            command = ["/bin/sh", "-c", SKIP_WHEN_LOCKED, "fleet-job"]
            k8s.batch.v1.CronJob(
                f"{name}-{job}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=f"fleet-{job}", namespace=kube.namespace,
                                                    labels={names.LABEL_ROLE: "jobs"}),
                spec=k8s.batch.v1.CronJobSpecArgs(
                    schedule=schedule, time_zone="Etc/UTC", concurrency_policy="Forbid",
                    successful_jobs_history_limit=3, failed_jobs_history_limit=5, starting_deadline_seconds=120,
                    job_template=k8s.batch.v1.JobTemplateSpecArgs(spec=k8s.batch.v1.JobSpecArgs(
                        backoff_limit=0, active_deadline_seconds=cfg.jobs.drain_timeout_seconds + 600,
                        template=k8s.core.v1.PodTemplateSpecArgs(
                            metadata=k8s.meta.v1.ObjectMetaArgs(labels={names.LABEL_ROLE: "jobs"}),
                            spec=k8s.core.v1.PodSpecArgs(
                                service_account_name=SERVICE_ACCOUNT, restart_policy="Never",
                                node_selector={names.LABEL_ROLE: "system"},
                                security_context=k8s.core.v1.PodSecurityContextArgs(
                                    run_as_non_root=True, run_as_user=10001, seccomp_profile=k8s.core.v1.
                                    SeccompProfileArgs(type="RuntimeDefault")),
                                containers=[k8s.core.v1.ContainerArgs(
                                    name=job, image=cfg.jobs.image, command=command, args=argv,
                                    env=[k8s.core.v1.EnvVarArgs(name="AWS_REGION", value=cfg.region),
                                         k8s.core.v1.EnvVarArgs(name="LLMFLEET_CACHE", value="/tmp/llm-fleet")],
                                    resources=k8s.core.v1.ResourceRequirementsArgs(
                                        requests={"cpu": "100m", "memory": "256Mi"}, limits={"memory": "512Mi"}),
                                    security_context=k8s.core.v1.SecurityContextArgs(
                                        allow_privilege_escalation=False, read_only_root_filesystem=True,
                                        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"])),
                                    volume_mounts=[k8s.core.v1.VolumeMountArgs(name="stack", mount_path=STACK_DIR,
                                                                               read_only=True),
                                                   k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp")])],
                                volumes=[k8s.core.v1.VolumeArgs(name="stack", config_map=k8s.core.v1.
                                                                ConfigMapVolumeSourceArgs(name=config_map.metadata.name)),
                                         k8s.core.v1.VolumeArgs(name="tmp", empty_dir={})]))))),
                opts=kopts)
