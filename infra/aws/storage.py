"""Weights storage: one KMS-encrypted, versioned, private, TLS-only S3 bucket per stack; a copy Job per
(model, revision) that brings the checkpoint from the Hugging Face hub, verifies every file and then
writes the completion marker; a read-only IRSA role for serving pods and a read-write one for the Job.

The bucket holds `models/<model>/<revision>/...`; a revision is served only once its marker object
(`WeightsSource.marker_key`) exists, which the copy Job writes last.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.aws.cluster import Cluster, iam_name, irsa_trust_policy
from infra.planning.coldstart import CACHE_PATHS
from infra.planning.plan import Plan
from infra.runtime import secret_output
from infra.stack import names
from infra.stack.spec import ModelSpec, StackConfig
from infra.wiring import KubeTarget, WeightsSource

READER_SA = "weights-reader"
WRITER_SA = "weights-copy"
HF_TOKEN_SECRET = "hf-token"
SCRIPT_CONFIGMAP = "weights-copy-script"
SCRIPT_FILE = "copy_weights.py"
# Docker Hub library/python, tag 3.12.11-slim-bookworm, pinned to the multi-arch index digest seen pinned
# in several public Dockerfiles (resolved 2026-09).
COPY_IMAGE = ("python:3.12.11-slim-bookworm"
              "@sha256:519591d6871b7bc437060736b9f7456b8731f1499a57e22e6c285135ae657bf7")
# PyPI releases the copy script is written and tested against (the project's dev environment).
COPY_PACKAGES = ("huggingface_hub==1.33.0", "boto3==1.44.5")
MULTIPART_ABORT_DAYS = 7


def copied_models(cfg: StackConfig) -> tuple[ModelSpec, ...]:
    """Models whose weights come from the hub (a local-directory model is not copied)."""
    return tuple(m for m in cfg.models if not m.is_local)


def job_name(model: ModelSpec) -> str:
    digest = hashlib.sha256(f"{model.name}@{model.revision}".encode()).hexdigest()[:8]
    return names.dns_label(f"weights-copy-{model.name}")[:54].rstrip("-") + f"-{digest}"


def tls_only_policy(bucket_arn: str) -> dict:
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}


def reader_policy(bucket_arn: str, key_arn: str, prefixes: list[str], cache_prefixes: list[str] = ()) -> dict:
    """Read the model prefixes only: get their objects, list inside them, decrypt with the bucket key.
    Read and write the models' compile-cache prefixes (serving pods restore and save engine caches)."""
    statements: list[dict] = [{"Sid": "DecryptWeights", "Effect": "Allow", "Action": "kms:Decrypt",
                               "Resource": key_arn}]
    if cache_prefixes:
        statements += [
            {"Sid": "CompileCacheObjects", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
             "Resource": [f"{bucket_arn}/{p}*" for p in cache_prefixes]},
            {"Sid": "CompileCacheList", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
             "Condition": {"StringLike": {"s3:prefix": [f"{p}*" for p in cache_prefixes]}}},
            {"Sid": "EncryptCompileCache", "Effect": "Allow", "Action": "kms:GenerateDataKey", "Resource": key_arn},
        ]
    if prefixes:
        statements += [
            {"Sid": "ReadModelObjects", "Effect": "Allow", "Action": "s3:GetObject",
             "Resource": [f"{bucket_arn}/{p}*" for p in prefixes]},
            {"Sid": "ListModelPrefixes", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
             "Condition": {"StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}}},
        ]
    return {"Version": "2012-10-17", "Statement": statements}


def writer_policy(bucket_arn: str, key_arn: str, prefixes: list[str]) -> dict:
    """Write (multipart included) and read back the model prefixes; nothing else in the bucket."""
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "WriteModelObjects", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts"],
         "Resource": [f"{bucket_arn}/{p}*" for p in prefixes]},
        # Unconditional: S3 answers a HEAD of a missing key with 404 (resume: "not copied yet") only to a
        # caller allowed s3:ListBucket without a prefix, and 403 otherwise. It lists key names, no data.
        {"Sid": "ListBucket", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:ListBucketMultipartUploads"],
         "Resource": bucket_arn},
        {"Sid": "EncryptWeights", "Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
         "Resource": key_arn},
    ]}


def copy_script() -> str:
    return resources.files("infra.aws.data").joinpath(SCRIPT_FILE).read_text(encoding="utf-8")


class WeightsStorage(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    source: WeightsSource

    def __init__(self, name: str, cfg: StackConfig, plan: Plan, cluster: Cluster, kube: KubeTarget,
                 account_id: pulumi.Output[str] | str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llmfleet:storage:WeightsStorage", name, None, opts)
        self._hub_endpoint = cfg.storage.hub_endpoint          # an HF mirror (modelscope is refused on EKS)
        child = pulumi.ResourceOptions(parent=self)
        cluster_name = names.cluster_name(cfg)
        tags = names.tags(cfg, "storage")
        physical = pulumi.Output.from_input(account_id).apply(lambda account: names.bucket_name(cfg, account))

        key = aws.kms.Key(f"{name}-key", description=f"llm-fleet weights bucket of {cfg.stack}",
                          enable_key_rotation=True, deletion_window_in_days=30, tags=tags, opts=child)
        aws.kms.Alias(f"{name}-key", name=f"alias/{cluster_name}-weights", target_key_id=key.key_id, opts=child)
        bucket = aws.s3.Bucket(f"{name}-bucket", bucket=physical, force_destroy=False, tags=tags, opts=child)
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"), opts=child)
        block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access", bucket=bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=child)
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption", bucket=bucket.id,
            rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.
                BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="aws:kms", kms_master_key_id=key.arn),
                bucket_key_enabled=True)],
            opts=child)
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning", bucket=bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=child)
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=bucket.id,
            rules=[aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="old-versions-and-abandoned-uploads", status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                    noncurrent_days=cfg.storage.noncurrent_version_days),
                expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(expired_object_delete_marker=True),
                abort_incomplete_multipart_upload=aws.s3.
                BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                    days_after_initiation=MULTIPART_ABORT_DAYS))],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]))
        aws.s3.BucketPolicy(f"{name}-policy", bucket=bucket.id,
                            policy=bucket.arn.apply(lambda arn: json.dumps(tls_only_policy(arn))),
                            opts=pulumi.ResourceOptions(parent=self, depends_on=[block]))
        self.bucket_name = bucket.bucket
        self.key_arn = key.arn

        models = copied_models(cfg)
        source = WeightsSource(bucket_name=bucket.bucket, reader_service_account=READER_SA, region=cfg.region)
        prefixes = [source.prefix(m.name, m.revision) for m in models]
        caches = [source.cache_prefix(m.name, m.revision) for m in models if m.loading in CACHE_PATHS]
        reader = self._role(f"{name}-reader", iam_name(cluster_name, "weights-reader"), READER_SA, cluster, tags,
                            pulumi.Output.all(bucket.arn, key.arn).apply(
                                lambda a: json.dumps(reader_policy(a[0], a[1], prefixes, caches))))
        self.source = source

        # -- Kubernetes side: service accounts, the token Secret, the script, one Job per model revision
        kopts = kube.opts(self)
        k8s.core.v1.ServiceAccount(f"{name}-reader-sa", metadata=k8s.meta.v1.ObjectMetaArgs(
            name=READER_SA, namespace=kube.namespace, annotations={"eks.amazonaws.com/role-arn": reader.arn}),
            opts=kopts)
        self.jobs: dict[str, k8s.batch.v1.Job] = {}
        if not models:
            self.register_outputs({"bucket_name": self.bucket_name})
            return
        writer = self._role(f"{name}-writer", iam_name(cluster_name, "weights-copy"), WRITER_SA, cluster, tags,
                            pulumi.Output.all(bucket.arn, key.arn).apply(
                                lambda a: json.dumps(writer_policy(a[0], a[1], prefixes))))
        writer_sa = k8s.core.v1.ServiceAccount(f"{name}-writer-sa", metadata=k8s.meta.v1.ObjectMetaArgs(
            name=WRITER_SA, namespace=kube.namespace, annotations={"eks.amazonaws.com/role-arn": writer.arn}),
            opts=kopts)
        token_secret = None
        if cfg.storage.hf_token is not None:
            token_secret = k8s.core.v1.Secret(
                f"{name}-hf-token", metadata=k8s.meta.v1.ObjectMetaArgs(name=HF_TOKEN_SECRET, namespace=kube.namespace),
                type="Opaque", string_data={"token": secret_output(cfg.storage.hf_token)}, opts=kopts)
        script = k8s.core.v1.ConfigMap(
            f"{name}-script", metadata=k8s.meta.v1.ObjectMetaArgs(name=SCRIPT_CONFIGMAP, namespace=kube.namespace),
            data={SCRIPT_FILE: copy_script()}, opts=kopts)
        depends = [writer_sa, script, *cluster.ready, *([token_secret] if token_secret else [])]
        for model in models:
            self.jobs[model.name] = self._job(name, model, source, cfg.region, kube, token_secret is not None, depends)
        self.register_outputs({"bucket_name": self.bucket_name})

    def _role(self, resource_name: str, role_name: str, service_account: str, cluster: Cluster,
              tags: dict[str, str], policy: pulumi.Output[str]) -> aws.iam.Role:
        role = aws.iam.Role(f"{resource_name}-role", name=role_name, tags=tags,
                            assume_role_policy=irsa_trust_policy(cluster.oidc_provider_arn, cluster.oidc_issuer,
                                                                 names.NAMESPACE, service_account),
                            opts=pulumi.ResourceOptions(parent=self))
        aws.iam.RolePolicy(f"{resource_name}-policy", role=role.name, policy=policy,
                           opts=pulumi.ResourceOptions(parent=self))
        return role

    def _job(self, name: str, model: ModelSpec, source: WeightsSource, region: str, kube: KubeTarget,
             with_token: bool, depends: list[pulumi.Resource]) -> k8s.batch.v1.Job:
        env = [
            k8s.core.v1.EnvVarArgs(name="REPO_ID", value=model.source),
            k8s.core.v1.EnvVarArgs(name="REVISION", value=model.revision),
            k8s.core.v1.EnvVarArgs(name="BUCKET", value=source.bucket_name),
            k8s.core.v1.EnvVarArgs(name="PREFIX", value=source.prefix(model.name, model.revision)),
            k8s.core.v1.EnvVarArgs(name="MARKER_KEY", value=source.marker_key(model.name, model.revision)),
            k8s.core.v1.EnvVarArgs(name="AWS_REGION", value=region),
            k8s.core.v1.EnvVarArgs(name="HOME", value="/tmp"),
            k8s.core.v1.EnvVarArgs(name="PYTHONPATH", value="/tmp/deps"),
            k8s.core.v1.EnvVarArgs(name="PYTHONUNBUFFERED", value="1"),
        ]
        if self._hub_endpoint:
            # huggingface_hub reads HF_ENDPOINT at import: listing and downloads go to the mirror
            env.append(k8s.core.v1.EnvVarArgs(name="HF_ENDPOINT", value=self._hub_endpoint))
        if with_token:
            env.append(k8s.core.v1.EnvVarArgs(name="HF_TOKEN", value_from=k8s.core.v1.EnvVarSourceArgs(
                secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=HF_TOKEN_SECRET, key="token"))))
        install = ("pip install --quiet --no-cache-dir --disable-pip-version-check --target /tmp/deps "
                   + " ".join(COPY_PACKAGES))
        labels = {"app.kubernetes.io/name": "weights-copy", "app.kubernetes.io/part-of": "llm-fleet",
                  names.LABEL_MODEL: model.name}
        # A changed script changes the (immutable) pod template, so the Job is replaced and re-run.
        script_sha = hashlib.sha256(copy_script().encode()).hexdigest()
        return k8s.batch.v1.Job(
            f"{name}-copy-{model.name}",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=job_name(model), namespace=kube.namespace, labels=labels,
                # A 750 GB copy outlasts any sensible `pulumi up`; the marker, not the Job, says "done".
                annotations={"pulumi.com/skipAwait": "true"}),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=10, active_deadline_seconds=24 * 3600,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels,
                                                        annotations={"llm-fleet/script-sha256": script_sha}),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=WRITER_SA, restart_policy="Never",
                        node_selector={names.LABEL_ROLE: "system"},
                        security_context=k8s.core.v1.PodSecurityContextArgs(
                            run_as_non_root=True, run_as_user=65534, run_as_group=65534,
                            seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault")),
                        containers=[k8s.core.v1.ContainerArgs(
                            name="copy", image=COPY_IMAGE, command=["sh", "-c"],
                            args=[f"{install} && exec python /opt/llm-fleet/{SCRIPT_FILE}"], env=env,
                            resources=k8s.core.v1.ResourceRequirementsArgs(
                                requests={"cpu": "2", "memory": "4Gi"}, limits={"memory": "8Gi"}),
                            security_context=k8s.core.v1.SecurityContextArgs(
                                allow_privilege_escalation=False, read_only_root_filesystem=True,
                                capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"])),
                            volume_mounts=[
                                k8s.core.v1.VolumeMountArgs(name="script", mount_path="/opt/llm-fleet", read_only=True),
                                k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp")])],
                        volumes=[
                            k8s.core.v1.VolumeArgs(name="script", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                                name=SCRIPT_CONFIGMAP)),
                            k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(
                                size_limit="2Gi"))]))),
            opts=pulumi.ResourceOptions.merge(kube.opts(self, *depends),
                                              pulumi.ResourceOptions(delete_before_replace=True)))
