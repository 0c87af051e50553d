"""The stack file's `ci:` section (and `bootstrap`): where the workflows preview and deploy the stack from.
Called only by `config.parse_config`."""

from __future__ import annotations

import re

from infra.stack.reader import ConfigError, Node
from infra.stack.sections import PROJECT
from infra.stack.spec import CiSpec, ClusterSpec, JobsSpec, NetworkSpec

GITHUB_HOSTED = re.compile(r"(ubuntu|windows|macos)-.*")


def parse_ci(node: Node, bootstrap: bool, cluster: ClusterSpec, network: NetworkSpec, jobs: JobsSpec) -> CiSpec:
    """`ci:` where the workflows deploy this stack from. A private API endpoint is reachable only from inside
    the VPC: a GitHub-hosted runner is refused there, a CodeBuild runner is made by the stack in the VPC."""
    runner = node.str("runner", "github-hosted", choices=("github-hosted", "codebuild", "self-hosted"))
    runs_on = node.strs("runsOn", pattern=r"[A-Za-z0-9][\w.-]*", hint="expected a runner label such as self-hosted")
    connection = node.str("connectionArn", pattern=r"arn:aws[a-z-]*:(codeconnections|codestar-connections):"
                                                   r"[a-z0-9-]+:\d{12}:connection/[0-9a-f-]+",
                          hint="expected arn:aws:codeconnections:<region>:<account>:connection/<id>")
    node.done()
    private = cluster.existing is None and not cluster.endpoint_public
    if runner == "github-hosted":
        runs_on = runs_on or ("ubuntu-24.04",)
        if private:
            raise ConfigError(
                f"{node.sub('runner')}: 'github-hosted' runners cannot reach this stack's private API endpoint "
                f"(cluster.endpointPublic: false): every Kubernetes resource would time out; set "
                "ci.runner: codebuild (a runner in the VPC, made by the stack; README \"First deploy of a private "
                "stack\"), or self-hosted with runsOn labels of a runner in the VPC, or cluster.endpointPublic: true")
        if not all(GITHUB_HOSTED.fullmatch(label) for label in runs_on):
            raise ConfigError(f"{node.sub('runsOn')}: {list(runs_on)} are not GitHub-hosted labels (e.g. "
                              "ubuntu-24.04); for your own runners set ci.runner: self-hosted")
    elif runner == "self-hosted":
        if not runs_on:
            raise ConfigError(f"{node.sub('runsOn')}: a self-hosted runner needs its labels, e.g. "
                              "[self-hosted, linux, llm-fleet-prod]")
        if private and network.existing_vpc_id is None:
            raise ConfigError(f"{node.sub('runner')}: a self-hosted runner cannot be inside a VPC the first deploy "
                              "has yet to create; use ci.runner: codebuild (the stack makes its runner in the VPC), or "
                              "network.existingVpcId for a VPC your runner already lives in")
    else:
        if runs_on:
            raise ConfigError(f"{node.sub('runsOn')}: the CodeBuild runner's label is derived from the stack "
                              "(codebuild-<cluster>-deploy-<run id>-<attempt>); remove runsOn")
        if cluster.existing is not None:
            raise ConfigError(f"{node.sub('runner')}: 'codebuild' runs in the VPC this stack creates; with "
                              "cluster.existing use github-hosted or self-hosted")
        if connection is None:
            raise ConfigError(f"{node.sub('connectionArn')}: the CodeBuild runner registers with GitHub through a "
                              "CodeConnections connection; create one (console: Developer Tools > Connections > "
                              "GitHub) and give its ARN")
        if jobs.github_repo is None:
            raise ConfigError(f"{PROJECT}:jobs.githubRepo: the CodeBuild runner serves one repository; give owner/name")
    if bootstrap and runner != "codebuild":
        raise ConfigError(f"{PROJECT}:bootstrap: only a ci.runner: codebuild stack has a bootstrap run (it creates "
                          "the VPC and the runner that deploys the rest)")
    return CiSpec(runner=runner, runs_on=runs_on, connection_arn=connection, bootstrap=bootstrap)
