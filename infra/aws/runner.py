"""The CI deploy runner of a private-endpoint stack (`ci.runner: codebuild`): a CodeBuild project in the
stack's private subnets that GitHub Actions jobs ask for with `runs-on: codebuild-<project>-<run id>-
<attempt>` (AWS CodeBuild user guide, "Tutorial: Configure a CodeBuild-hosted GitHub Actions runner":
a GITHUB source, a webhook filtered on WORKFLOW_JOB_QUEUED). It depends on the network only, so the
bootstrap run (`llm-fleet:bootstrap`) can create it before the cluster exists; the cluster lets its
security group reach the private API endpoint.

The runner runs the job's own steps: the job still assumes the deploy role through GitHub's OIDC, so
the project's role needs only what CodeBuild itself does (logs, ENIs in the VPC, the GitHub connection).
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from infra.aws.cluster import iam_name
from infra.aws.network import Network
from infra.stack import names
from infra.stack.spec import StackConfig

# CodeBuild's Ubuntu 22.04 curated image: actions/setup-python finds its Python builds for Ubuntu (not for
# Amazon Linux), and the AWS CLI is preinstalled.
RUNNER_IMAGE = "aws/codebuild/standard:7.0"
RUNNER_COMPUTE = "BUILD_GENERAL1_MEDIUM"     # 4 vCPU / 7 GB: a Pulumi program with ~300 resources
BUILD_TIMEOUT_MINUTES = 120                  # above the workflows' 90-minute job timeout
LOG_RETENTION_DAYS = 90


def runner_policy(partition: str, region: str, account: str, project: str, connection_arn: str) -> dict:
    """CodeBuild's service role for a VPC project (CodeBuild user guide, "Allow CodeBuild to access AWS
    services required to create a VPC network interface"), logs of this project, the GitHub connection."""
    log_arn = f"arn:{partition}:logs:{region}:{account}:log-group:/aws/codebuild/{project}"
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": [log_arn, f"{log_arn}:*"]},
        {"Effect": "Allow", "Resource": "*", "Action": [
            "ec2:CreateNetworkInterface", "ec2:DescribeDhcpOptions", "ec2:DescribeNetworkInterfaces",
            "ec2:DeleteNetworkInterface", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "ec2:DescribeVpcs"]},
        {"Effect": "Allow", "Action": "ec2:CreateNetworkInterfacePermission",
         "Resource": f"arn:{partition}:ec2:{region}:{account}:network-interface/*",
         "Condition": {"StringEquals": {"ec2:AuthorizedService": "codebuild.amazonaws.com"}}},
        {"Effect": "Allow", "Action": ["codeconnections:GetConnectionToken", "codeconnections:GetConnection",
                                       "codestar-connections:GetConnectionToken", "codestar-connections:GetConnection",
                                       "codeconnections:UseConnection", "codestar-connections:UseConnection"],
         "Resource": connection_arn},
    ]}


def refuse_bootstrap_of_a_running_stack(cfg: StackConfig) -> None:
    """A bootstrap run declares only the VPC and the runner: on a stack whose cluster exists it would delete
    everything else. The workflows bootstrap only when the runner is missing; this is the program's guard."""
    if names.cluster_name(cfg) in (aws.eks.get_clusters().names or []):
        raise pulumi.RunError(
            f"llm-fleet:bootstrap: cluster {names.cluster_name(cfg)} already exists, and a bootstrap run would "
            "delete it (it declares only the VPC and the deploy runner); run without bootstrap (`pulumi config rm "
            "llm-fleet:bootstrap`), from the runner or a machine inside the VPC")


class DeployRunner(pulumi.ComponentResource):
    project_name: pulumi.Output[str]

    def __init__(self, name: str, cfg: StackConfig, network: Network, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmfleet:ci:DeployRunner", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        project = names.runner_project(cfg)
        tags = names.tags(cfg, "ci")
        identity = aws.get_caller_identity()
        partition = aws.get_partition().partition
        logs = aws.cloudwatch.LogGroup(f"{name}-logs", name=f"/aws/codebuild/{project}",
                                       retention_in_days=LOG_RETENTION_DAYS, tags=tags, opts=child)
        role = aws.iam.Role(
            f"{name}-role", name=iam_name(cfg.cluster.name, "deploy-runner"), tags=tags,
            assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "codebuild.amazonaws.com"}, "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": identity.account_id}}}]}),
            opts=child)
        policy = aws.iam.RolePolicy(
            f"{name}-policy", role=role.name,
            policy=json.dumps(runner_policy(partition, cfg.region, identity.account_id, project,
                                            cfg.ci.connection_arn)),
            opts=child)
        built = aws.codebuild.Project(
            f"{name}-project", name=project, description=f"GitHub Actions runner in the VPC of {cfg.cluster.name}",
            service_role=role.arn, build_timeout=BUILD_TIMEOUT_MINUTES,
            source=aws.codebuild.ProjectSourceArgs(
                type="GITHUB", location=f"https://github.com/{cfg.jobs.github_repo}.git",
                auth=aws.codebuild.ProjectSourceAuthArgs(type="CODECONNECTIONS", resource=cfg.ci.connection_arn)),
            artifacts=aws.codebuild.ProjectArtifactsArgs(type="NO_ARTIFACTS"),
            environment=aws.codebuild.ProjectEnvironmentArgs(
                type="LINUX_CONTAINER", compute_type=RUNNER_COMPUTE, image=RUNNER_IMAGE,
                image_pull_credentials_type="CODEBUILD"),
            vpc_config=aws.codebuild.ProjectVpcConfigArgs(
                vpc_id=network.vpc_id, subnets=network.private_subnet_ids,
                security_group_ids=[network.runner_security_group_id]),
            logs_config=aws.codebuild.ProjectLogsConfigArgs(
                cloudwatch_logs=aws.codebuild.ProjectLogsConfigCloudwatchLogsArgs(status="ENABLED",
                                                                                  group_name=logs.name)),
            tags=tags, opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]))
        aws.codebuild.Webhook(
            f"{name}-webhook", project_name=built.name, build_type="BUILD",
            filter_groups=[aws.codebuild.WebhookFilterGroupArgs(filters=[
                aws.codebuild.WebhookFilterGroupFilterArgs(type="EVENT", pattern="WORKFLOW_JOB_QUEUED")])],
            opts=child)
        self.project_name = built.name
        self.register_outputs({"project_name": self.project_name})
