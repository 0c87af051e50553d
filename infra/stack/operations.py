"""The stack file's operating sections: `monitoring:` (Prometheus, alerts) and `jobs:` (the scheduled cost
jobs: where they run, their image and cron schedules). Called only by `config.parse_config`."""

from __future__ import annotations

from infra.stack.cron import cron_problem
from infra.stack.images import pinned_reference_problem
from infra.stack.reader import ConfigError, Node
from infra.stack.spec import JobsSpec, MonitoringSpec


def parse_monitoring(node: Node) -> MonitoringSpec:
    spec = MonitoringSpec(
        prometheus=node.str("prometheus", "install", choices=("install", "existing", "off")),
        prometheus_url=node.str("prometheusUrl", pattern=r"https?://\S+", hint="expected an http(s) URL"),
        grafana=node.bool("grafana", True), dcgm_exporter=node.bool("dcgmExporter", True),
        alerts=node.bool("alerts", True),
        ttft_p99_seconds=node.float("ttftP99Seconds", 5.0, minimum=0.1, maximum=600))
    node.done()
    if spec.prometheus == "existing" and spec.prometheus_url is None:
        raise ConfigError(f"{node.sub('prometheusUrl')}: prometheus: existing needs the URL of that Prometheus")
    return spec


def parse_jobs(node: Node) -> JobsSpec:
    spec = JobsSpec(
        github_repo=node.str("githubRepo", pattern=r"[\w.-]+/[\w.-]+", hint="expected owner/name"),
        github_oidc_provider_arn=node.str(
            "githubOidcProviderArn",
            pattern=r"arn:aws[a-z-]*:iam::\d{12}:oidc-provider/token\.actions\.githubusercontent\.com",
            hint="expected arn:aws:iam::<account>:oidc-provider/token.actions.githubusercontent.com"),
        in_cluster=node.bool("inCluster", False),
        image=node.str("image"),
        reconcile_cron=node.str("reconcileCron", "*/5 * * * *"),
        sweep_cron=node.str("sweepCron", "0 * * * *"),
        drain_timeout_seconds=node.int("drainTimeoutSeconds", 900, minimum=0, maximum=7200),
        prometheus_url=node.str("prometheusUrl", pattern=r"https?://\S+", hint="expected an http(s) URL"))
    node.done()
    if spec.in_cluster and spec.image is None:
        raise ConfigError(f"{node.sub('image')}: inCluster jobs need an image with llm-fleet installed "
                          "(build Dockerfile.jobs and push it to your registry), pinned by tag or digest")
    problem = spec.image is not None and pinned_reference_problem(spec.image)
    if problem:
        raise ConfigError(f"{node.sub('image')}: {spec.image!r} {problem}, e.g. ghcr.io/acme/llm-fleet-jobs:0.1.0")
    for key, expr in (("reconcileCron", spec.reconcile_cron), ("sweepCron", spec.sweep_cron)):
        problem = cron_problem(expr)
        if problem:
            raise ConfigError(f"{node.sub(key)}: {expr!r} {problem}")
    if spec.github_oidc_provider_arn and not spec.github_repo:
        raise ConfigError(f"{node.sub('githubRepo')}: the GitHub OIDC trust needs the repository (owner/name)")
    return spec

