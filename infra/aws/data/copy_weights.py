"""Copy one model revision from the Hugging Face hub to S3, verify every file, then write the marker.

Run by the weights copy Job (a pinned python image with pinned `huggingface_hub` and `boto3`):
    REPO_ID=zai-org/GLM-5.1-FP8 REVISION=main BUCKET=... PREFIX=models/glm-5-1/main/ \
    MARKER_KEY=models/glm-5-1/main/.llm-fleet-complete [HF_TOKEN=...] [HF_ENDPOINT=<mirror>] python copy_weights.py
(HF_ENDPOINT: the stack's storage.hubEndpoint, a Hugging Face mirror; listing and downloads both use it)

- lists the repository's files at the revision with their hub checksums: sha256 for LFS files (the
  weights), the git blob sha1 for small files stored in git;
- skips files already in S3 whose metadata carries the same checksum and size (a re-run, or a retry of
  the Job after a failure, resumes where it stopped);
- streams each missing file from the hub into an S3 multipart upload, hashing on the way, and
  completes the upload only when the checksum matches (a corrupt download is aborted, never stored);
- checks every object once more, then writes the marker (JSON: repo, commit, files, bytes) last.
A marker for the same commit means there is nothing to do. A marker for another commit (the branch
moved) is deleted first, so serving sees the prefix as incomplete until the new copy is verified.

The functions take their hub listing, download stream and S3 client as arguments (tests use a fake
hub and moto); nothing runs at import. One JSON line is logged per action.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

MIB = 1024 * 1024
DEFAULT_PART_SIZE = 64 * MIB       # 64 MiB x 10,000 parts: files up to 640 GB
DEFAULT_WORKERS = 8
ATTEMPTS = 4


class VerifyError(RuntimeError):
    """A file's bytes do not match the hub's checksum (or its size)."""


@dataclass(frozen=True)
class HubFile:
    path: str
    size: int
    sha256: str | None          # LFS files: the hub's sha256 of the content
    git_sha1: str | None        # files in git: the blob id

    @property
    def is_lfs(self) -> bool:
        return self.sha256 is not None


def log(action: str, **fields) -> None:
    print(json.dumps({"action": action, **fields}, sort_keys=True), flush=True)


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def list_files(api, repo_id: str, revision: str, token: str | None) -> tuple[str, list[HubFile]]:
    """(commit sha the revision resolves to, files with checksums) from the hub's model info."""
    info = api.model_info(repo_id, revision=revision, files_metadata=True, token=token)
    files = []
    for sibling in info.siblings or []:
        if sibling.lfs is not None:
            files.append(HubFile(sibling.rfilename, sibling.lfs.size, sibling.lfs.sha256.lower(), None))
        else:
            files.append(HubFile(sibling.rfilename, sibling.size or 0, None, sibling.blob_id))
    return info.sha, files


def _head(s3, bucket: str, key: str) -> dict | None:
    from botocore.exceptions import ClientError

    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def is_done(s3, bucket: str, key: str, f: HubFile) -> bool:
    """The object exists with the file's size and the hub's checksum in its metadata."""
    head = _head(s3, bucket, key)
    if head is None or head.get("ContentLength") != f.size:
        return False
    meta = head.get("Metadata") or {}
    return meta.get("sha256") == f.sha256 if f.is_lfs else meta.get("git-sha1") == f.git_sha1


def _parts(chunks: Iterable[bytes], part_size: int) -> Iterator[bytes]:
    buffer = bytearray()
    for chunk in chunks:
        buffer.extend(chunk)
        while len(buffer) >= part_size:
            yield bytes(buffer[:part_size])
            del buffer[:part_size]
    if buffer:
        yield bytes(buffer)


def copy_file(s3, bucket: str, key: str, f: HubFile, chunks: Iterable[bytes],
              part_size: int = DEFAULT_PART_SIZE) -> str:
    """Upload one file from its byte stream; returns its sha256. Raises VerifyError (nothing stored) on
    a checksum or size mismatch."""
    if not f.is_lfs:
        data = b"".join(chunks)
        if len(data) != f.size or git_blob_sha1(data) != f.git_sha1:
            raise VerifyError(f"{f.path}: git blob sha1 {git_blob_sha1(data)} / {len(data)} bytes, hub says "
                              f"{f.git_sha1} / {f.size}")
        digest = hashlib.sha256(data).hexdigest()
        s3.put_object(Bucket=bucket, Key=key, Body=data, Metadata={"git-sha1": f.git_sha1, "sha256": digest})
        return digest
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, Metadata={"sha256": f.sha256})
    upload_id, sha, size, parts = upload["UploadId"], hashlib.sha256(), 0, []
    try:
        for number, part in enumerate(_parts(chunks, part_size), start=1):
            sha.update(part)
            size += len(part)
            etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=part)["ETag"]
            parts.append({"PartNumber": number, "ETag": etag})
        digest = sha.hexdigest()
        if digest != f.sha256 or size != f.size:
            raise VerifyError(f"{f.path}: sha256 {digest} / {size} bytes, hub says {f.sha256} / {f.size}")
        if not parts:  # an empty LFS file still needs one (empty) part
            etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"")["ETag"]
            parts.append({"PartNumber": 1, "ETag": etag})
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
        return digest
    except BaseException:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise


def read_marker(s3, bucket: str, key: str) -> dict | None:
    if _head(s3, bucket, key) is None:
        return None
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    try:
        return json.loads(body)
    except ValueError:
        return {}


def run(s3, api, fetch: Callable[[str, str], Iterable[bytes]], *, repo_id: str, revision: str, bucket: str,
        prefix: str, marker_key: str, token: str | None = None, workers: int = DEFAULT_WORKERS,
        part_size: int = DEFAULT_PART_SIZE, sleep: Callable[[float], None] = time.sleep) -> dict:
    """Copy, verify, mark. `fetch(path, commit)` yields the file's bytes. Returns the marker written."""
    commit, files = list_files(api, repo_id, revision, token)
    marker = read_marker(s3, bucket, marker_key)
    if marker is not None and marker.get("commit") == commit:
        log("skip-complete", repo=repo_id, revision=revision, commit=commit)
        return marker
    if marker is not None:
        log("delete-stale-marker", key=marker_key, was=marker.get("commit"), now=commit)
        s3.delete_object(Bucket=bucket, Key=marker_key)
    todo = [f for f in files if not is_done(s3, bucket, prefix + f.path, f)]
    log("plan", repo=repo_id, commit=commit, files=len(files), to_copy=len(todo),
        bytes=sum(f.size for f in todo))

    def one(f: HubFile) -> None:
        for attempt in range(1, ATTEMPTS + 1):
            started = time.monotonic()
            try:
                copy_file(s3, bucket, prefix + f.path, f, fetch(f.path, commit), part_size)
                log("copied", path=f.path, bytes=f.size, seconds=round(time.monotonic() - started, 1))
                return
            except Exception as err:  # noqa: BLE001 - network errors of any library: retry, then give up
                log("retry" if attempt < ATTEMPTS else "failed", path=f.path, attempt=attempt, error=str(err)[:500])
                if attempt == ATTEMPTS:
                    raise
                sleep(min(60, 2 ** attempt))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for future in [pool.submit(one, f) for f in todo]:
            future.result()
    bad = [f.path for f in files if not is_done(s3, bucket, prefix + f.path, f)]
    if bad:
        raise VerifyError(f"after the copy, {len(bad)} object(s) do not match the hub: {', '.join(bad[:10])}")
    marker = {"repo": repo_id, "revision": revision, "commit": commit, "files": len(files),
              "bytes": sum(f.size for f in files), "completedAt": datetime.now(UTC).isoformat(timespec="seconds")}
    s3.put_object(Bucket=bucket, Key=marker_key, Body=json.dumps(marker, indent=2).encode(),
                  ContentType="application/json")
    log("marked-complete", key=marker_key, commit=commit, files=len(files))
    return marker


def hub_fetcher(repo_id: str, token: str | None, endpoint: str | None = None) -> Callable[[str, str], Iterator[bytes]]:
    """Stream a file of the repo at a commit over HTTPS (the hub's, or the mirror's, resolve endpoint)."""
    from huggingface_hub import get_session, hf_hub_url
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status

    def fetch(path: str, commit: str) -> Iterator[bytes]:
        url = hf_hub_url(repo_id, path, revision=commit, endpoint=endpoint)
        with get_session().stream("GET", url, headers=build_hf_headers(token=token), follow_redirects=True,
                                  timeout=60) as response:
            hf_raise_for_status(response)
            yield from response.iter_bytes(8 * MIB)

    return fetch


def main(argv: list[str] | None = None, env: dict[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    missing = [k for k in ("REPO_ID", "REVISION", "BUCKET", "PREFIX", "MARKER_KEY") if not env.get(k)]
    if missing:
        print(f"copy_weights: missing environment variable(s) {', '.join(missing)}", file=sys.stderr)
        return 2
    import boto3
    from huggingface_hub import HfApi

    token = env.get("HF_TOKEN") or None
    endpoint = env.get("HF_ENDPOINT") or None
    try:
        run(boto3.client("s3"), HfApi(endpoint=endpoint), hub_fetcher(env["REPO_ID"], token, endpoint),
            repo_id=env["REPO_ID"],
            revision=env["REVISION"], bucket=env["BUCKET"], prefix=env["PREFIX"], marker_key=env["MARKER_KEY"],
            token=token, workers=int(env.get("WORKERS", DEFAULT_WORKERS)),
            part_size=int(env.get("PART_MB", DEFAULT_PART_SIZE // MIB)) * MIB)
    except VerifyError as err:
        log("verify-failed", error=str(err))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
