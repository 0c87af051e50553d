"""Stack file -> StackConfig (frozen dataclasses). The only reader of configuration.

All keys live under the `llm-fleet:` namespace of `stacks/Pulumi.<env>.yaml`; the region is `aws:region`.
Every error names the key path, the bad value and what would work (see `reader.ConfigError`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infra.stack.ci import parse_ci
from infra.stack.crosscheck import check_stack
from infra.stack.document import read_stack_document
from infra.stack.operations import parse_jobs, parse_monitoring
from infra.stack.reader import ConfigError, Node, ascii_skeleton, code_points, refuse_clear_text_secrets
from infra.stack.s3names import bucket_name_problem
from infra.stack.sections import (
    NAMESPACE,
    parse_cluster,
    parse_engines,
    parse_gateway,
    parse_model,
    parse_network,
    parse_pool,
    parse_storage,
    unique_names,
)
from infra.stack.shapes import parse_shapes
from infra.stack.spec import StackConfig

# ---------------------------------------------------------------------------------------------- loading

def load_stack_file(path: str | Path) -> StackConfig:
    """Read `Pulumi.<stack>.yaml` directly (the offline path used by `fleet`)."""
    path = Path(path)
    match = re.fullmatch(r"Pulumi\.(.+)\.ya?ml", path.name)
    if not match:
        raise ConfigError(f"{path}: a stack file is named Pulumi.<stack>.yaml")
    values = read_stack_document(path)
    secret_keys = {k for k, v in values.items() if isinstance(v, Mapping) and set(v) == {"secure"}}
    return parse_config(values, match.group(1), secret_keys=secret_keys, base_dir=path.parent)


def parse_config(values: Mapping[str, Any], stack: str, *, secret_keys: set[str] | frozenset[str] = frozenset(),
                 base_dir: Path = Path(".")) -> StackConfig:
    """Namespaced config (`llm-fleet:<key>`, `aws:region`) -> StackConfig, or ConfigError."""
    ours: dict[str, Any] = {}
    for key, value in values.items():
        namespace, _, name = _config_key(key)
        if namespace == NAMESPACE and str(key) not in secret_keys:
            ours[name] = value
    refuse_clear_text_secrets(ours, f"{NAMESPACE}")
    root = Node({k: v for k, v in ours.items()}, NAMESPACE)
    secret_names = frozenset(k.partition(":")[2] for k in secret_keys if k.startswith(NAMESPACE + ":"))
    region = values.get("aws:region")
    if not isinstance(region, str) or not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region or ""):
        raise ConfigError(f"aws:region: {region!r} is not an AWS region; set e.g. `aws:region: us-east-1`")

    environment = root.str("environment", required=True, choices=("dev", "staging", "prod"))
    network = parse_network(root.node("network"), environment)
    cluster = parse_cluster(root.node("cluster"), stack, secret_names)
    shapes = parse_shapes(root.items("shapes"))
    pools = tuple(parse_pool(n) for n in root.items("pools"))
    unique_names("pools", [p.name for p in pools])
    for pool in pools:
        if cluster.existing is None and len(cluster.name) + 1 + len(pool.name) > 63:
            raise ConfigError(f"{NAMESPACE}:pools: node group name {cluster.name}-{pool.name!r} is over EKS's 63 "
                              "characters; shorten the pool name or cluster.name")
    engines = parse_engines(root.node("engines"))
    models = tuple(parse_model(n, {p.name: p for p in pools}, base_dir) for n in root.items("models"))
    unique_names("models", [m.name for m in models])
    gateway = parse_gateway(root.node("gateway"), {m.name for m in models}, secret_names)
    monitoring = parse_monitoring(root.node("monitoring"))
    storage = parse_storage(root.node("storage"), secret_names)
    jobs = parse_jobs(root.node("jobs"))
    ci = parse_ci(root.node("ci"), root.bool("bootstrap", False), cluster, network, jobs)
    root.done()
    _check_shapes(shapes, pools, cluster, storage)
    if not pools and cluster.existing is None:
        raise ConfigError(f"{NAMESPACE}:pools: no GPU pool is defined; add at least one under `pools:`")
    if not models:
        raise ConfigError(f"{NAMESPACE}:models: no model to serve; add at least one under `models:`")
    if cluster.existing is None and storage.bucket_name is None:
        default = f"{NAMESPACE}-{stack}-123456789012-{region}"[:63].rstrip("-.")
        problem = bucket_name_problem(default)
        if problem:
            raise ConfigError(f"{NAMESPACE}.storage.bucketName: the default name from stack {stack!r} "
                              f"({default.replace('123456789012', '<account>')}) {problem}; set storage.bucketName")
    cfg = StackConfig(stack=stack, environment=environment, region=region, network=network,
                      cluster=cluster, pools=pools, models=models, engines=engines, gateway=gateway,
                      monitoring=monitoring, storage=storage, jobs=jobs, secret_keys=frozenset(secret_keys),
                      shapes=shapes, ci=ci)
    check_stack(cfg)
    return cfg


def _config_key(key: Any) -> tuple[str, str, str]:
    """`namespace:name` of a config key; a key Pulumi would not take, or one that imitates ours, is refused."""
    text = str(key)
    points = code_points(text)
    if points:
        skeleton = ascii_skeleton(text)
        raise ConfigError(f"config: key {text!r} (contains {points}; did you mean {skeleton!r}?)"
                          if skeleton.isascii() and skeleton != text else f"config: key {text!r} (contains {points})")
    namespace, sep, name = text.partition(":")
    if not isinstance(key, str) or not sep or not namespace or not name:
        raise ConfigError(f"config: {text!r} is not a config key; Pulumi writes them namespace:key, "
                          f"e.g. {NAMESPACE}:{text or 'pools'}")
    if namespace != NAMESPACE and difflib.SequenceMatcher(None, namespace, NAMESPACE).ratio() >= 0.75:
        raise ConfigError(f"config: {text!r} is in namespace {namespace!r}; did you mean {NAMESPACE}:{name}?")
    return namespace, sep, name


def _check_shapes(shapes, pools, cluster, storage) -> None:
    """Declared shapes live on an existing cluster with the same accelerator; ModelScope needs no S3 copy."""
    declared = {s.name: s for s in shapes}
    for i, pool in enumerate(pools):
        for itype in pool.instance_types:
            shape = declared.get(itype)
            if shape is None:
                continue
            if cluster.existing is None:
                raise ConfigError(f"{NAMESPACE}:pools[{i}].instanceTypes: {itype!r} is a declared shape (on-prem or "
                                  "GPU cloud); EKS node groups launch EC2 types only; use it with cluster.existing")
            if shape.accelerator != cluster.accelerator:
                raise ConfigError(f"{NAMESPACE}:shapes: {itype!r} has accelerator {shape.accelerator!r} but "
                                  f"cluster.accelerator is {cluster.accelerator!r}; make them agree")
    if storage.hub_endpoint == "modelscope" and cluster.existing is None:
        raise ConfigError(f"{NAMESPACE}:storage.hubEndpoint: 'modelscope' is for cluster.existing stacks (the engines "
                          "download from ModelScope); the S3 copy job speaks the Hugging Face API: give an HF "
                          "mirror URL such as https://hf-mirror.com")
