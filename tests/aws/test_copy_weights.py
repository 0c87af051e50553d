"""The copy Job's script against a fake hub and S3 in moto: resumable, verified, marker last."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import boto3
import pytest
from moto import mock_aws

from infra.aws.data import copy_weights as cw

BUCKET = "weights"
PREFIX = "models/m/main/"
MARKER = PREFIX + ".llm-fleet-complete"
MIB = 1024 * 1024


@dataclass
class Lfs:
    size: int
    sha256: str
    pointer_size: int = 134


@dataclass
class Sibling:
    rfilename: str
    size: int | None
    blob_id: str | None
    lfs: Lfs | None = None


@dataclass
class Info:
    sha: str
    siblings: list[Sibling]


@dataclass
class FakeHub:
    """model_info like HfApi's (files_metadata=True) and a fetch that streams the bytes in chunks."""
    files: dict[str, bytes]
    lfs: set[str]
    commit: str = "c0ffee"
    fetched: list[str] = field(default_factory=list)
    corrupt: set[str] = field(default_factory=set)

    def model_info(self, repo_id, revision=None, files_metadata=False, token=None):
        assert files_metadata
        siblings = []
        for path, data in self.files.items():
            if path in self.lfs:
                siblings.append(Sibling(path, len(data), "lfs-pointer-sha1",
                                        Lfs(len(data), hashlib.sha256(data).hexdigest())))
            else:
                siblings.append(Sibling(path, len(data), cw.git_blob_sha1(data)))
        return Info(self.commit, siblings)

    def fetch(self, path, commit):
        assert commit == self.commit
        self.fetched.append(path)
        data = self.files[path]
        if path in self.corrupt:
            data = b"X" + data[1:]
        for i in range(0, len(data), 3 * MIB):
            yield data[i:i + 3 * MIB]


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def hub() -> FakeHub:
    shard = bytes(range(256)) * (11 * MIB // 256)           # 11 MiB: three 5 MiB parts
    return FakeHub(files={"config.json": b'{"model_type": "glm"}', "model-00001.safetensors": shard,
                          "tokenizer.json": b"{}" * 100},
                   lfs={"model-00001.safetensors"})


def run(s3, fake, **kw):
    return cw.run(s3, fake, fake.fetch, repo_id="org/m", revision="main", bucket=BUCKET, prefix=PREFIX,
                  marker_key=MARKER, workers=2, part_size=5 * MIB, sleep=lambda _: None, **kw)


def test_copies_every_file_with_its_checksum_then_marks(s3):
    fake = hub()
    marker = run(s3, fake)
    assert marker["commit"] == "c0ffee" and marker["files"] == 3
    assert json.loads(s3.get_object(Bucket=BUCKET, Key=MARKER)["Body"].read())["commit"] == "c0ffee"
    shard = s3.get_object(Bucket=BUCKET, Key=PREFIX + "model-00001.safetensors")
    assert shard["Body"].read() == fake.files["model-00001.safetensors"]
    assert shard["Metadata"]["sha256"] == hashlib.sha256(fake.files["model-00001.safetensors"]).hexdigest()
    config = s3.head_object(Bucket=BUCKET, Key=PREFIX + "config.json")
    assert config["Metadata"]["git-sha1"] == cw.git_blob_sha1(fake.files["config.json"])


def test_second_run_with_the_marker_does_nothing(s3):
    fake = hub()
    run(s3, fake)
    fake.fetched.clear()
    run(s3, fake)
    assert fake.fetched == []


def test_a_rerun_resumes_copying_only_what_is_missing(s3):
    fake = hub()
    run(s3, fake)
    s3.delete_object(Bucket=BUCKET, Key=MARKER)
    s3.delete_object(Bucket=BUCKET, Key=PREFIX + "tokenizer.json")
    fake.fetched.clear()
    run(s3, fake)
    assert fake.fetched == ["tokenizer.json"]
    assert s3.head_object(Bucket=BUCKET, Key=MARKER)


def test_corrupt_download_is_never_stored_and_no_marker_is_written(s3):
    fake = hub()
    fake.corrupt = {"model-00001.safetensors"}
    with pytest.raises(cw.VerifyError, match="model-00001.safetensors"):
        run(s3, fake)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert PREFIX + "model-00001.safetensors" not in keys and MARKER not in keys
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert fake.fetched.count("model-00001.safetensors") == cw.ATTEMPTS


def test_corrupt_small_file_fails_its_git_checksum(s3):
    fake = hub()
    fake.corrupt = {"config.json"}
    with pytest.raises(cw.VerifyError, match="config.json"):
        run(s3, fake)


def test_moved_revision_drops_the_old_marker_and_recopies_changed_files(s3):
    fake = hub()
    run(s3, fake)
    fake.commit = "beef"
    fake.files["config.json"] = b'{"model_type": "glm", "v": 2}'
    fake.fetched.clear()
    marker = run(s3, fake)
    assert marker["commit"] == "beef" and fake.fetched == ["config.json"]


def test_object_with_wrong_checksum_metadata_is_copied_again(s3):
    fake = hub()
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "tokenizer.json", Body=fake.files["tokenizer.json"],
                  Metadata={"git-sha1": "0" * 40})
    assert not cw.is_done(s3, BUCKET, PREFIX + "tokenizer.json",
                          cw.HubFile("tokenizer.json", 200, None, cw.git_blob_sha1(fake.files["tokenizer.json"])))
    run(s3, fake)
    assert "tokenizer.json" in fake.fetched


def test_main_refuses_a_missing_environment():
    assert cw.main([], env={"REPO_ID": "org/m"}) == 2


def test_git_blob_sha1_matches_git():
    # `printf 'hello\n' | git hash-object --stdin`
    assert cw.git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
