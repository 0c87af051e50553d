"""AWS access for the scaling jobs: clients, retries, the stack lock, node groups, capacity blocks.

Clients come from a boto3 Session and are passed in, so tests point them at moto (boto3 honours
`AWS_ENDPOINT_URL`). botocore's standard retry mode retries throttling and transient errors on every
call; calls that change something are also wrapped in `retrying` (our own backoff, injectable sleep),
because an update that fails after botocore gives up would leave a pool half-done.
"""

from __future__ import annotations

import getpass
import json
import os
import random
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from infra.planning.capacity import Offering, Reservation
from infra.planning.fleetops import NodeGroup, Scaling, iso
from infra.stack import names
from infra.stack.spec import StackConfig
from scripts.aws_errors import AWS_FAILURE, describe_error, is_aws_error  # noqa: F401  (the jobs' one import)
from scripts.common import UserError

MAX_ATTEMPTS = 6                       # botocore standard mode, per call
THROTTLED = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException",
                       "RequestLimitExceeded", "RequestThrottled", "RequestThrottledException", "SlowDown"})
TRANSIENT = frozenset({"ServiceUnavailable", "ServiceUnavailableException", "InternalFailure",
                       "InternalError", "InternalServerError", "InternalServerException", "ServerException",
                       "RequestTimeout"})
DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedException",
                    "UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken",
                    "ExpiredTokenException", "InvalidAccessKeyId", "SignatureDoesNotMatch"})
LOCK_BUSY_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
NO_CREDENTIALS = ("no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                  "or run where an IAM role is available (GitHub OIDC, EKS Pod Identity, instance profile)")


def session(region: str) -> boto3.Session:
    s = boto3.Session(region_name=region)
    if s.get_credentials() is None:
        raise UserError(NO_CREDENTIALS)
    return s


def client(sess: boto3.Session, service: str, max_attempts: int = MAX_ATTEMPTS) -> Any:
    return sess.client(service, config=Config(retries={"mode": "standard", "total_max_attempts": max_attempts},
                                              connect_timeout=10, read_timeout=60))


def error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def retrying(call: Callable[[], Any], *, sleep: Callable[[float], None], attempts: int = 5, base: float = 1.0,
             cap: float = 30.0, jitter: Callable[[], float] = random.random) -> Any:
    """Run `call`, retrying throttling and transient AWS errors with capped exponential backoff."""
    for attempt in range(attempts):
        try:
            return call()
        except ClientError as err:
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            retryable = error_code(err) in THROTTLED | TRANSIENT or status in (429, 500, 502, 503, 504)
            if not retryable or attempt == attempts - 1:
                raise
            sleep(min(cap, base * 2 ** attempt) * (0.5 + jitter() / 2))
    raise AssertionError("unreachable")


@contextmanager
def user_errors(what: str) -> Iterator[None]:
    """AWS failures a user fixes (credentials, permissions, endpoint) become one-line UserErrors."""
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError):
        raise UserError(NO_CREDENTIALS) from None
    except NoRegionError:
        raise UserError("no AWS region: the stack's aws:region should set it") from None
    except EndpointConnectionError as err:
        raise UserError(f"{what}: cannot reach AWS at {err.kwargs.get('endpoint_url')}") from None
    except ClientError as err:
        if error_code(err) in DENIED:
            message = err.response.get("Error", {}).get("Message", "")
            raise UserError(f"{what}: AWS refused ({error_code(err)}: {message}); the jobs' role needs the "
                            "IAM actions listed in docs/jobs.md") from None
        raise


def account_id(sts: Any) -> str:
    with user_errors("sts:GetCallerIdentity"):
        return str(sts.get_caller_identity()["Account"])


# ---------------------------------------------------------------------------------------------- node groups

# Node groups are found by this tag (with the cluster), never by a fixed name: their names are generated
# (names.nodegroup_prefix); the program tags each group with its pool (infra.aws.nodepools).
POOL_TAG = names.TAG_POOL


def describe_group(eks: Any, cfg: StackConfig, pool: str) -> NodeGroup:
    found = find_group(eks, cfg, pool)
    if found is None:
        raise UserError(f"pool {pool}: no node group tagged {POOL_TAG}={pool} in cluster {names.cluster_name(cfg)} "
                        f"({cfg.region}); deploy the stack first (pulumi up), or check the stack name")
    return found


def find_group(eks: Any, cfg: StackConfig, pool: str) -> NodeGroup | None:
    """The pool's node group, or None when it is not deployed (yet)."""
    return describe_groups(eks, cfg, only=pool).get(pool)


def describe_groups(eks: Any, cfg: StackConfig, only: str | None = None) -> dict[str, NodeGroup]:
    """Every deployed pool's node group (by its pool tag), read before anything changes; a pool not
    deployed yet is left out (the jobs report it and handle the others)."""
    cluster = names.cluster_name(cfg)
    wanted = {p.name for p in cfg.pools} if only is None else {only}
    out: dict[str, NodeGroup] = {}
    with user_errors(f"eks:ListNodegroups {cluster}"):
        try:
            listed = [n for page in eks.get_paginator("list_nodegroups").paginate(clusterName=cluster)
                      for n in page.get("nodegroups", [])]
        except ClientError as err:
            if error_code(err) == "ResourceNotFoundException":
                return {}                               # no cluster yet: nothing deployed
            raise
    for name in listed:
        with user_errors(f"eks:DescribeNodegroup {name}"):
            try:
                ng = eks.describe_nodegroup(clusterName=cluster, nodegroupName=name)["nodegroup"]
            except ClientError as err:
                if error_code(err) == "ResourceNotFoundException":
                    continue                            # deleted in between
                raise
        pool = (ng.get("tags") or {}).get(POOL_TAG)
        if pool in wanted:
            out[pool] = _group(pool, ng)
    return out


def _group(pool: str, ng: dict[str, Any]) -> NodeGroup:
    sc = ng.get("scalingConfig", {})
    modified = ng.get("modifiedAt")
    scaling = Scaling(int(sc.get("minSize", 0)), int(sc.get("maxSize", 1)), int(sc.get("desiredSize", 0)))
    return NodeGroup(pool=pool, name=ng["nodegroupName"], arn=ng["nodegroupArn"], status=ng.get("status", "UNKNOWN"),
                     scaling=scaling, tags=dict(ng.get("tags") or {}),
                     modified_at=modified.astimezone(UTC) if isinstance(modified, datetime) else None)


class ApplyFailed(Exception):
    """A node group change that did not happen; `left` says what could not be undone (normally nothing)."""

    def __init__(self, message: str, left: str | None = None):
        super().__init__(message if left is None else f"{message}; {left}")
        self.left = left


def apply(eks: Any, cfg: StackConfig, group: NodeGroup, scaling: Scaling | None, set_tags: dict[str, str],
          remove_tags: list[str], sleep: Callable[[float], None]) -> None:
    """One atomic change: tags (the override's record), then the scaling config; when the scaling
    update fails, the tags are put back as they were, so a failed override leaves nothing behind."""
    before = {k: group.tags[k] for k in [*set_tags, *remove_tags] if k in group.tags}
    added = [k for k in set_tags if k not in group.tags]
    try:
        if remove_tags:
            retrying(lambda: eks.untag_resource(resourceArn=group.arn, tagKeys=remove_tags), sleep=sleep)
        if set_tags:
            retrying(lambda: eks.tag_resource(resourceArn=group.arn, tags=set_tags), sleep=sleep)
        if scaling is not None:
            retrying(lambda: eks.update_nodegroup_config(
                clusterName=names.cluster_name(cfg), nodegroupName=group.name,
                scalingConfig={"minSize": scaling.min_size, "maxSize": scaling.max_size,
                               "desiredSize": scaling.desired}), sleep=sleep)
    except Exception as err:
        if not is_aws_error(err):
            raise
        try:
            if added:
                retrying(lambda: eks.untag_resource(resourceArn=group.arn, tagKeys=added), sleep=sleep)
            if before:
                retrying(lambda: eks.tag_resource(resourceArn=group.arn, tags=before), sleep=sleep)
        except Exception as undo:
            if not is_aws_error(undo):
                raise
            raise ApplyFailed(describe_error(err), f"the tags could not be put back ({describe_error(undo)}): "
                              f"they are now {sorted(set_tags)} set, {sorted(remove_tags)} removed") from None
        raise ApplyFailed(describe_error(err)) from None


def on_demand_nodes(ec2: Any, cfg: StackConfig, group: NodeGroup) -> int:
    """Running instances of the pool's node group that are not spot (EKS tags them with the group)."""
    count = 0
    with user_errors("ec2:DescribeInstances"):
        pages = ec2.get_paginator("describe_instances").paginate(Filters=[
            {"Name": "tag:eks:cluster-name", "Values": [names.cluster_name(cfg)]},
            {"Name": "tag:eks:nodegroup-name", "Values": [group.name]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]}])
        for page in pages:
            for res in page.get("Reservations", []):
                count += sum(1 for i in res.get("Instances", []) if i.get("InstanceLifecycle") != "spot")
    return count


# ---------------------------------------------------------------------------------------------- lock

class LockBusy(Exception):
    """Another run holds the stack's lock."""


class StackLock:
    """`locks/<stack>.json` in the stack's bucket, created with a conditional put (If-None-Match: *).
    A lock past its expiry is taken over with a put conditional on its ETag; release deletes it
    conditional on our ETag, so a run never removes a lock someone else took over."""

    def __init__(self, s3: Any, bucket: str, stack: str, command: str, *, clock: Callable[[], datetime],
                 ttl: timedelta = timedelta(minutes=15), break_lock: bool = False):
        self.s3, self.bucket, self.key, self.clock, self.ttl = s3, bucket, names.lock_key(stack), clock, ttl
        self.command = command
        self.break_lock = break_lock
        self.broken: dict[str, Any] | None = None       # the holder whose live lock --break-lock took
        self.owner = whoami()
        self.token = uuid.uuid4().hex
        self.etag: str | None = None

    def _body(self, ttl: timedelta) -> bytes:
        now = self.clock()
        return json.dumps({"owner": self.owner, "pid": os.getpid(), "host": socket.gethostname(),
                           "command": self.command, "token": self.token, "acquired": iso(now),
                           "expires": iso(now + ttl)}).encode()

    def _put(self, ttl: timedelta, **condition: str) -> str:
        with user_errors(f"s3://{self.bucket}/{self.key}"):
            return str(self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=self._body(ttl),
                                          ContentType="application/json", **condition)["ETag"])

    def acquire(self) -> None:
        for _ in range(3):
            try:
                self.etag = self._put(self.ttl, IfNoneMatch="*")
                return
            except ClientError as err:
                if error_code(err) == "NoSuchBucket":
                    raise UserError(f"lock bucket {self.bucket} does not exist: deploy the stack first "
                                    "(pulumi up) or check storage.bucketName") from None
                if error_code(err) not in LOCK_BUSY_CODES:
                    raise
            try:
                with user_errors(f"s3://{self.bucket}/{self.key}"):
                    held = self.s3.get_object(Bucket=self.bucket, Key=self.key)
            except ClientError as err:
                if error_code(err) in ("NoSuchKey", "404"):
                    continue                 # released in between: try again
                raise
            info = _parse(held["Body"].read())
            expires = info.get("expires")
            if expires is not None and expires > self.clock() and not self.break_lock:
                raise LockBusy(f"stack is locked by {info.get('owner')} (pid {info.get('pid')}, "
                               f"{info.get('command')}) until {iso(expires)}; nothing changed (if that run is "
                               "dead, --break-lock takes the lock over)")
            if expires is not None and expires > self.clock():
                self.broken = info
            try:
                self.etag = self._put(self.ttl, IfMatch=held["ETag"])
                return
            except ClientError as err:
                if error_code(err) not in LOCK_BUSY_CODES:
                    raise
        raise LockBusy("stack lock is contended; nothing changed")

    def extend(self, ttl: timedelta) -> None:
        """Push our expiry out (before a long drain wait); fails if someone took the lock over."""
        try:
            self.etag = self._put(ttl, IfMatch=self.etag or "")
        except ClientError as err:
            if error_code(err) in LOCK_BUSY_CODES:
                raise LockBusy("lost the stack lock (it expired and another run took it over)") from None
            raise

    def release(self) -> None:
        """Best effort: a lock we cannot delete expires on its own, and an error here must not hide
        the one that may be unwinding the run."""
        if self.etag is None:
            return
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
        except ClientError as err:
            if error_code(err) not in LOCK_BUSY_CODES | {"NoSuchKey", "404"}:
                print(f"warning: could not release s3://{self.bucket}/{self.key} ({error_code(err)}); "
                      f"it expires by itself", file=sys.stderr)
        self.etag = None

    def __enter__(self) -> StackLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def whoami() -> str:
    """user@host; a container's uid may have no passwd entry (getpass then raises)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def _parse(body: bytes) -> dict[str, Any]:
    try:
        info = json.loads(body)
        info["expires"] = datetime.fromisoformat(str(info["expires"]).replace("Z", "+00:00"))
        return info
    except (ValueError, KeyError, TypeError):
        return {"owner": "unreadable lock", "expires": None}   # unreadable: treat as stale


# ------------------------------------------------------------------------------------------ capacity blocks

def reservations(ec2: Any, instance_type: str) -> list[Reservation]:
    """Capacity Blocks of this type already bought (active, scheduled, or being paid)."""
    out = []
    with user_errors("ec2:DescribeCapacityReservations"):
        pages = ec2.get_paginator("describe_capacity_reservations").paginate(Filters=[
            {"Name": "instance-type", "Values": [instance_type]},
            {"Name": "state", "Values": ["active", "scheduled", "payment-pending"]}])
        for page in pages:
            for r in page.get("CapacityReservations", []):
                if r.get("ReservationType") not in (None, "capacity-block"):
                    continue
                out.append(Reservation(r["CapacityReservationId"], r.get("InstanceType", instance_type),
                                       int(r.get("TotalInstanceCount", 0)), _utc(r.get("StartDate")),
                                       _utc(r.get("EndDate")), r.get("State", "")))
    return out


def offerings(ec2: Any, instance_type: str, count: int, hours: int, start: datetime,
              end: datetime) -> list[Offering]:
    out, token = [], None
    with user_errors("ec2:DescribeCapacityBlockOfferings"):
        while True:
            page = ec2.describe_capacity_block_offerings(
                InstanceType=instance_type, InstanceCount=count, CapacityDurationHours=hours,
                StartDateRange=start, EndDateRange=end, **({"NextToken": token} if token else {}))
            for o in page.get("CapacityBlockOfferings", []):
                out.append(Offering(o["CapacityBlockOfferingId"], o.get("InstanceType", instance_type),
                                    o.get("AvailabilityZone", ""), int(o.get("InstanceCount", count)),
                                    _utc(o["StartDate"]), _utc(o["EndDate"]),
                                    float(o.get("UpfrontFee", "nan")), o.get("CurrencyCode", "USD")))
            token = page.get("NextToken")
            if not token:
                return out


def purchase(ec2: Any, offering_id: str, tags: dict[str, str]) -> dict[str, Any]:
    """Buy a Capacity Block (never retried: a purchase is not idempotent)."""
    with user_errors("ec2:PurchaseCapacityBlock"):
        reply = ec2.purchase_capacity_block(
            CapacityBlockOfferingId=offering_id, InstancePlatform="Linux/UNIX",
            TagSpecifications=[{"ResourceType": "capacity-reservation",
                                "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])
    return dict(reply.get("CapacityReservation", {}))


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.astimezone(UTC)
