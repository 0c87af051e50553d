"""Weights storage: the bucket's guarantees, IAM scoped to the model prefixes, the copy Jobs."""

from __future__ import annotations

import json

from infra.aws.storage import COPY_IMAGE, job_name, reader_policy
from scripts.render import render
from tests.aws.test_network import stack_file
from tests.conftest import FIXTURES, named, of_type

BUCKET = "llm-fleet-prod-123456789012-us-east-1"
JOB = "kubernetes:batch/v1:Job"


def test_bucket_is_named_from_the_stack_and_account(rendered):
    bucket = named(rendered("prod"), "weights-bucket")["inputs"]
    assert bucket["bucket"] == BUCKET and bucket["forceDestroy"] is False
    assert bucket["tags"]["component"] == "storage"


def test_bucket_is_kms_encrypted_versioned_and_private(rendered):
    records = rendered("prod")
    (rule,) = named(records, "weights-encryption")["inputs"]["rules"]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    assert rule["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"].endswith("/weights-key-key-id")
    assert rule["bucketKeyEnabled"] is True
    assert named(records, "weights-versioning")["inputs"]["versioningConfiguration"] == {"status": "Enabled"}
    block = named(records, "weights-public-access")["inputs"]
    assert all(block[f] is True for f in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                          "restrictPublicBuckets"))
    assert named(records, "weights-ownership")["inputs"]["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    (key,) = [k["inputs"] for k in of_type(records, "aws:kms/key:Key") if k["name"] == "weights-key"]
    assert key["enableKeyRotation"] is True


def test_bucket_policy_denies_anything_but_tls(rendered):
    policy = json.loads(named(rendered("prod"), "weights-policy")["inputs"]["policy"])
    (deny,) = policy["Statement"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "s3:*"
    assert deny["Resource"] == [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_lifecycle_expires_old_versions_and_abandoned_uploads(rendered):
    (rule,) = named(rendered("prod"), "weights-lifecycle")["inputs"]["rules"]
    assert rule["status"] == "Enabled"
    assert rule["noncurrentVersionExpiration"] == {"noncurrentDays": 30}
    assert rule["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 7}


def test_reader_role_reads_only_the_served_model_prefixes(rendered):
    records = rendered("prod")
    policy = json.loads(named(records, "weights-reader-policy")["inputs"]["policy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["ReadModelObjects"]["Action"] == "s3:GetObject"
    assert by_sid["ReadModelObjects"]["Resource"] == [f"arn:aws:s3:::{BUCKET}/models/glm-5-1/main/*",
                                                      f"arn:aws:s3:::{BUCKET}/models/qwen2-5-7b/main/*"]
    assert by_sid["ListModelPrefixes"]["Condition"] == {
        "StringLike": {"s3:prefix": ["models/glm-5-1/main/*", "models/qwen2-5-7b/main/*"]}}
    assert by_sid["DecryptWeights"]["Action"] == "kms:Decrypt"
    actions = {a for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert not any(a.startswith("s3:Delete") for a in actions)
    # it writes nothing but the compile caches of the models it serves (saved once per revision)
    writes = [s for s in policy["Statement"] if "s3:PutObject" in s["Action"]]
    assert [w["Sid"] for w in writes] == ["CompileCacheObjects"]
    assert writes[0]["Resource"] == [f"arn:aws:s3:::{BUCKET}/compile-cache/glm-5-1/main/*",
                                     f"arn:aws:s3:::{BUCKET}/compile-cache/qwen2-5-7b/main/*"]
    trust = json.loads(named(records, "weights-reader-role")["inputs"]["assumeRolePolicy"])
    issuer = "oidc.eks.us-east-1.amazonaws.com/id/MOCKllm-fleet-prod"
    subject = trust["Statement"][0]["Condition"]["StringEquals"][f"{issuer}:sub"]
    assert subject == "system:serviceaccount:llm-fleet:weights-reader"


def test_writer_role_writes_only_the_model_prefixes(rendered):
    policy = json.loads(named(rendered("prod"), "weights-writer-policy")["inputs"]["policy"])
    write = next(s for s in policy["Statement"] if s["Sid"] == "WriteModelObjects")
    assert "s3:PutObject" in write["Action"] and "s3:AbortMultipartUpload" in write["Action"]
    assert write["Resource"] == [f"arn:aws:s3:::{BUCKET}/models/glm-5-1/main/*",
                                 f"arn:aws:s3:::{BUCKET}/models/qwen2-5-7b/main/*"]
    kms = next(s for s in policy["Statement"] if s["Sid"] == "EncryptWeights")
    assert kms["Action"] == ["kms:GenerateDataKey", "kms:Decrypt"]


def test_reader_policy_without_hub_models_only_decrypts():
    policy = reader_policy("arn:aws:s3:::b", "arn:aws:kms:us-east-1:1:key/k", [])
    assert [s["Sid"] for s in policy["Statement"]] == ["DecryptWeights"]


def test_service_accounts_are_bound_to_their_roles(rendered):
    records = rendered("prod")
    reader = named(records, "weights-reader-sa")["inputs"]["metadata"]
    assert reader["name"] == "weights-reader" and reader["namespace"] == "llm-fleet"
    assert reader["annotations"]["eks.amazonaws.com/role-arn"].endswith("role/llm-fleet-prod-weights-reader")
    writer = named(records, "weights-writer-sa")["inputs"]["metadata"]
    assert writer["annotations"]["eks.amazonaws.com/role-arn"].endswith("role/llm-fleet-prod-weights-copy")


def test_one_copy_job_per_model_revision(rendered):
    records = rendered("prod")
    jobs = {j["inputs"]["metadata"]["labels"]["llm-fleet/model"]: j["inputs"] for j in of_type(records, JOB)
            if j["parent"] == "weights"}
    assert set(jobs) == {"glm-5-1", "qwen2-5-7b"}
    glm = jobs["glm-5-1"]
    assert glm["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    (container,) = glm["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["REPO_ID"] == "zai-org/GLM-5.1-FP8" and env["REVISION"] == "main"
    assert env["BUCKET"] == BUCKET and env["PREFIX"] == "models/glm-5-1/main/"
    assert env["MARKER_KEY"] == "models/glm-5-1/main/.llm-fleet-complete"
    assert env["HF_TOKEN"] == {"secretKeyRef": {"name": "hf-token", "key": "token"}}
    assert container["image"] == COPY_IMAGE and "@sha256:" in COPY_IMAGE
    assert "huggingface_hub==" in container["args"][0] and "boto3==" in container["args"][0]
    pod = glm["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "weights-copy" and pod["nodeSelector"] == {"llm-fleet/role": "system"}


def test_hf_token_secret_comes_from_secrets_manager_never_clear_text(rendered):
    secret = named(rendered("prod"), "weights-hf-token")["inputs"]
    assert secret["stringData"] == "[secret]"


def test_no_token_configured_means_no_secret(rendered):
    records = rendered("dev")
    assert not [r for r in records if r["name"] == "weights-hf-token"]
    (job,) = [j for j in of_type(records, JOB) if j["parent"] == "weights"]
    names = {e["name"] for e in job["inputs"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "HF_TOKEN" not in names


def test_local_directory_model_gets_no_copy_job(tmp_path):
    local = str(FIXTURES / "hf" / "Qwen__Qwen2.5-7B-Instruct")
    records = render(stack_file(tmp_path, lambda c: c["llm-fleet:models"][0].update(source=local), base="dev"))
    assert not [j for j in of_type(records, JOB) if j["parent"] == "weights"]


def test_job_names_are_stable_dns_labels():
    from infra.stack.config import load_stack_file
    from tests.conftest import STACKS

    cfg = load_stack_file(STACKS / "Pulumi.prod.yaml")
    names = [job_name(m) for m in cfg.models]
    assert names == [job_name(m) for m in cfg.models]
    assert all(len(n) <= 63 and n.replace("-", "").isalnum() for n in names)
