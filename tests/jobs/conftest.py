"""Fixtures for the scaling jobs: moto as a real local HTTP server (ThreadedMotoServer on 127.0.0.1,
a free port), a test stack file, node groups created as the program creates them, and deps with a
fake clock and sleep so nothing waits for real."""

from __future__ import annotations

import io
import socket
import textwrap
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import boto3
import moto.eks.utils as eks_utils
import pytest
from moto.backends import get_backend
from moto.core.responses import EmptyResult
from moto.eks.models import EKSBackend
from moto.eks.responses import EKSResponse
from moto.server import ThreadedMotoServer

from infra.stack import names
from infra.stack.config import load_stack_file
from scripts.aws import session as aws_session
from scripts.cmd_reconcile import Deps

ACCOUNT = "123456789012"                 # moto's default account
REGION = "us-east-1"

STACK = textwrap.dedent("""\
    config:
      aws:region: us-east-1
      llm-fleet:environment: prod
      llm-fleet:pools:
        - name: peak
          instanceTypes: [p5en.48xlarge]
          minSize: 0
          maxSize: 2
          schedule:
            timezone: Europe/London
            prewarmMinutes: 30
            offSize: 0
            windows:
              - {days: mon-fri, start: "09:00", end: "18:00", size: 2}
        - name: base
          instanceTypes: [g6e.xlarge]
          minSize: 1
          maxSize: 3
          desiredSize: 1
        - name: burst
          instanceTypes: [g6.xlarge, g6.2xlarge]
          capacity: spot
          minSize: 0
          maxSize: 2
          idleMinutes: 30
        - name: block
          instanceTypes: [p5en.48xlarge]
          capacity: capacity-block
          capacityReservationId: cr-0123456789abcdef0
          azIds: [use1-az4]
          minSize: 0
          maxSize: 1
          schedule:
            timezone: Asia/Shanghai
            prewarmMinutes: 45
            windows:
              - {days: mon-fri, start: "09:00", end: "19:00", size: 1}
      llm-fleet:models:
        - name: qwen
          source: Qwen/Qwen2.5-7B-Instruct
          precision: bf16
          placements:
            - {pool: peak, replicas: {min: 0, max: 2}}
            - {pool: base, replicas: {min: 1, max: 3}}
            - {pool: burst, replicas: {min: 0, max: 2}}
            - {pool: block, replicas: {min: 0, max: 1}}
      llm-fleet:jobs:
        drainTimeoutSeconds: 60
    """)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Partitions:
    """moto's EKS validates every role ARN by building a new boto3 Session to list partitions
    (~0.15 s per node group); same answer, computed once."""
    partitions = boto3.Session().get_available_partitions()

    def get_available_partitions(self):
        return self.partitions


@pytest.fixture(scope="session")
def moto_url():
    saved, eks_utils.Session = eks_utils.Session, _Partitions
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
    eks_utils.Session = saved


def _reset(*services: str) -> None:
    """Reset only the services the jobs write. moto's /moto-api/reset would also rebuild EC2's default
    state (AMIs, VPC), which costs ~1.5 s per test; tests that start EC2 instances terminate them."""
    for name in services:
        for account in get_backend(name).values():
            account.reset()


def _nodegroup(backend: EKSBackend, arn: str):
    for cluster in backend.clusters.values():
        for group in cluster.nodegroups.values():
            if group.arn == arn:
                return group
    return None


@pytest.fixture
def aws(moto_url, monkeypatch, tmp_path):
    """A clean moto, dummy credentials, AWS_ENDPOINT_URL pointing at it. moto 5.2.5's EKS
    untag_resource reads only the first of several tag keys, and tag_resource/untag_resource only tag
    clusters; real EKS also tags managed node groups (the API
    docs list clusters, node groups, Fargate profiles...), so the test shim below extends them to
    node group ARNs, keeping moto's own behaviour for clusters."""
    _reset("eks", "s3")
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    tag, untag = EKSBackend.tag_resource, EKSBackend.untag_resource

    def tag_resource(self, resource_arn, tags):
        group = _nodegroup(self, resource_arn)
        return tag(self, resource_arn, tags) if group is None else group.tags.update(tags)

    def untag_resource(self, resource_arn, tag_keys):
        group = _nodegroup(self, resource_arn)
        if group is None:
            return untag(self, resource_arn, tag_keys)
        for key in tag_keys if isinstance(tag_keys, list) else [tag_keys]:
            group.tags.pop(key, None)

    monkeypatch.setattr(EKSBackend, "tag_resource", tag_resource)
    monkeypatch.setattr(EKSBackend, "untag_resource", untag_resource)

    def untag_all(self):                      # moto reads only the first of repeated ?tagKeys=
        self.eks_backend.untag_resource(self._extract_arn_from_path(), self.querystring.get("tagKeys", []))
        return EmptyResult()

    monkeypatch.setattr(EKSResponse, "untag_resource", untag_all)
    return moto_url


@pytest.fixture
def stack_file(tmp_path) -> Path:
    path = tmp_path / "Pulumi.jobs.yaml"
    path.write_text(STACK)
    return path


@pytest.fixture
def cfg(stack_file):
    return load_stack_file(stack_file)


def client(service: str):
    return boto3.client(service, region_name=REGION)


def deploy(cfg):
    """Cluster, node groups (names from infra/stack/names.py, min/max/desired as the stack says) and the
    stack's bucket, as `pulumi up` leaves them."""
    eks, iam_role = client("eks"), f"arn:aws:iam::{ACCOUNT}:role/eks"
    eks.create_cluster(name=names.cluster_name(cfg), roleArn=iam_role,
                       resourcesVpcConfig={"subnetIds": ["subnet-1", "subnet-2"]})
    for pool in cfg.pools:
        eks.create_nodegroup(
            clusterName=names.cluster_name(cfg), nodegroupName=names.nodegroup_name(cfg, pool),
            nodeRole=f"arn:aws:iam::{ACCOUNT}:role/node", subnets=["subnet-1", "subnet-2"],
            scalingConfig={"minSize": pool.min_size, "maxSize": pool.max_size, "desiredSize": pool.desired_size},
            instanceTypes=list(pool.instance_types),
            capacityType={"spot": "SPOT", "capacity-block": "CAPACITY_BLOCK"}.get(pool.capacity, "ON_DEMAND"),
            labels={names.LABEL_POOL: pool.name}, tags={**names.tags(cfg, "nodepools"), names.TAG_POOL: pool.name})
    client("s3").create_bucket(Bucket=names.bucket_name(cfg, ACCOUNT))
    return cfg


@pytest.fixture
def deployed(aws, cfg):
    return deploy(cfg)


def scaling(cfg, pool: str) -> dict:
    ng = client("eks").describe_nodegroup(clusterName=names.cluster_name(cfg),
                                          nodegroupName=names.nodegroup_name(cfg, pool))["nodegroup"]
    return ng["scalingConfig"]


def ng_tags(cfg, pool: str) -> dict:
    ng = client("eks").describe_nodegroup(clusterName=names.cluster_name(cfg),
                                          nodegroupName=names.nodegroup_name(cfg, pool))["nodegroup"]
    return ng.get("tags", {})


@dataclass
class FakeTime:
    """A clock that only moves when the code sleeps."""
    now: datetime = field(default_factory=lambda: datetime(2026, 3, 30, 12, 0, tzinfo=UTC))
    mono: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        from datetime import timedelta
        self.sleeps.append(seconds)
        self.mono += seconds
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def deps(fake_time):
    out = io.StringIO()
    sessions: dict = {}

    def session(region: str):                # one boto3 Session per test (building one costs ~0.3 s)
        if region not in sessions:
            sessions[region] = aws_session(region)
        return sessions[region]

    return Deps(session=session, clock=fake_time.clock, monotonic=fake_time.monotonic, sleep=fake_time.sleep,
                ready_nodes=lambda pool: None, out=out, poll_seconds=5.0)


class _Server:
    """A tiny local HTTP server: `routes[path] = fn(query: dict) -> (status, content_type, body)`."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlparse

        routes: dict = {}
        hits: list = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                parsed = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
                hits.append((parsed.path, query, dict(self.headers)))
                fn = routes.get(parsed.path)
                status, ctype, body = fn(query) if fn else (404, "text/plain", "not found")
                data = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.routes, self.hits = routes, hits
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_server():
    server = _Server()
    yield server
    server.close()


def prometheus_reply(value: float | None) -> tuple[int, str, str]:
    """A Prometheus /api/v1/query answer: one sample, or an empty vector for None."""
    import json
    result = [] if value is None else [{"metric": {}, "value": [1700000000.0, str(value)]}]
    return 200, "application/json", json.dumps({"status": "success",
                                                "data": {"resultType": "vector", "result": result}})


@pytest.fixture(autouse=True)
def _quiet_werkzeug():
    import logging
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


def closed_port_url() -> str:
    """An http URL on which nothing listens (connection refused at once)."""
    return f"http://127.0.0.1:{_free_port()}"


def lock_key(cfg) -> tuple[str, str]:
    return names.bucket_name(cfg, ACCOUNT), f"locks/{cfg.stack}.json"


@pytest.fixture
def fleet(deps):
    """Run `fleet <command> ...` in-process with the test deps: (exit status, JSON lines, raw stdout)."""
    import importlib
    import json

    from scripts import fleet as cli
    from scripts.common import run_command

    def run(command: str, *argv: str, with_deps=None):
        use = with_deps or deps
        args = cli.build_parser().parse_args([command, *map(str, argv)])
        module = importlib.import_module(cli.COMMANDS[command])
        code = run_command(lambda a: module.run(a, use), args, cli.USER_ERRORS + tuple(args.user_errors))
        text = use.out.getvalue()
        use.out.seek(0)
        use.out.truncate()
        lines = [json.loads(x) for x in text.splitlines() if x.startswith("{")]
        return code, lines, text

    return run


class _Raw:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **kwargs):
        yield self.body


def aws_reply(request, status: int, body: bytes, error_type: str | None = None,
              content_type: str = "application/json"):
    """An HTTP answer botocore receives instead of moto's (a throttle, a 403, an HTML 500...)."""
    from botocore.awsrequest import AWSResponse
    headers = {"Content-Type": content_type, **({"x-amzn-ErrorType": error_type} if error_type else {})}
    return AWSResponse(request.url, status, headers, _Raw(body))


def answering(deps, service: str, operation: str, respond):
    """deps whose `service` client sends `operation` to `respond(request)` first (None: to moto); the
    client's own retries are off, so only ours run."""
    import dataclasses

    from scripts import aws as aws_mod

    def make(session, name):
        c = aws_mod.client(session, name, max_attempts=1)
        if name == service:
            c.meta.events.register(f"before-send.{service}.{operation}", lambda request, **kw: respond(request))
        return c

    return dataclasses.replace(deps, client=make)
