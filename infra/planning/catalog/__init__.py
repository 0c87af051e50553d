"""The catalogs: GPU instance shapes, models, managed-API prices and the sources behind every figure.

Data lives in the YAML files next to this module (package data); this loader validates it and hands
out frozen objects. Every error names the file and the key path, and what would have been accepted.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any

import yaml

from infra.planning.catalog.hardware import INTERCONNECTS, Amortization

PRECISIONS = ("bf16", "fp8", "int4", "w8a8", "w4a8")
ENGINES = ("vllm", "sglang")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_AS_OF = re.compile(r"^\d{4}-\d{2}(-\d{2})?$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_VERSION = re.compile(r"^v?(\d+(?:\.\d+)*)")


# libyaml's loader when PyYAML was built with it (about 10x faster on the catalog), else the pure one.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(text: str) -> Any:
    """Parse YAML text safely, with the C loader when present."""
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a SafeLoader (C or pure)


class CatalogError(ValueError):
    """The catalog data is invalid, or a lookup names something the catalog does not have."""


def version_key(version: str) -> tuple[int, ...]:
    """Numeric sort key for "0.19.0", "v0.9.2", "0.10.1.1" or "0.19.1rc1" (a suffix is ignored)."""
    match = _VERSION.match(str(version).strip())
    if not match:
        raise CatalogError(f"version {version!r} is not a dotted number such as '0.19.0'")
    parts = [int(p) for p in match.group(1).split(".")]
    while len(parts) > 1 and parts[-1] == 0:  # "0.10.1" == "0.10.1.0"
        parts.pop()
    return tuple(parts)


@dataclass(frozen=True)
class Source:
    key: str
    title: str
    url: str
    retrieved: str


@dataclass(frozen=True)
class InstanceShape:
    name: str
    gpu_model: str
    gpu_vendor: str
    gpu_count: int
    gpu_memory_mib: int  # per GPU, as EC2 / Karpenter report it
    vcpus: int
    memory_mib: int
    nvme_gb: int
    network_gbps: float
    efa_interfaces: int
    on_demand_usd: Mapping[str, float]  # region -> USD/hour
    spot_discount: float  # fraction off on-demand, 0..1
    sources: tuple[str, ...]
    interconnect: str = "none"        # one of INTERCONNECTS
    rdma_resource: str | None = None  # infiniband / roce: the RDMA device resource pods request
    provider: str = "aws"             # aws | onprem | <GPU cloud>: EFA exists only on "aws"
    flat_hourly_usd: float | None = None      # a GPU cloud's price per node-hour, any region
    amortization: Amortization | None = None  # an on-prem server bought, not rented

    @property
    def gpu_memory_gb(self) -> float:
        """Per-GPU memory in GB (10^9 bytes)."""
        return self.gpu_memory_mib * 2**20 / 1e9

    @property
    def total_gpu_memory_gb(self) -> float:
        return self.gpu_memory_gb * self.gpu_count

    @property
    def priced(self) -> bool:
        return bool(self.on_demand_usd) or self.flat_hourly_usd is not None or self.amortization is not None

    def hourly_usd(self, region: str) -> float:
        if self.amortization is not None:
            return self.amortization.hourly_usd
        if self.flat_hourly_usd is not None:
            return self.flat_hourly_usd
        try:
            return self.on_demand_usd[region]
        except KeyError:
            priced = ", ".join(sorted(self.on_demand_usd)) or "none"
            raise CatalogError(
                f"{self.name} has no on-demand price for region {region!r}; regions with a price: {priced}"
            ) from None


@dataclass(frozen=True)
class Checkpoint:
    hf_id: str
    precision: str  # bf16 | fp8 | int4
    quantization: str | None
    quantization_config: Mapping[str, Any] | None = None  # the checkpoint's config.json entry, if recorded


@dataclass(frozen=True)
class EngineFlags:
    engine: str
    min_version: str
    args: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class CatalogModel:
    key: str
    display_name: str
    family: str
    total_params_b: float
    active_params_b: float
    max_context: int
    checkpoints: tuple[Checkpoint, ...]
    hf_config: Mapping[str, Any]
    engine_flags: tuple[EngineFlags, ...]
    sources: tuple[str, ...]


@dataclass(frozen=True)
class ApiPrice:
    model: str
    provider: str
    input_usd_per_m: float | None
    output_usd_per_m: float | None
    blended_usd_per_m: float
    tokens_per_second: float | None
    as_of: str
    source: str


@dataclass(frozen=True)
class Catalog:
    instances: Mapping[str, InstanceShape]
    models: Mapping[str, CatalogModel]
    api_prices: tuple[ApiPrice, ...]
    sources: Mapping[str, Source]

    def instance(self, name: str) -> InstanceShape:
        if name not in self.instances:
            raise CatalogError(f"unknown instance type {name!r}; known: {', '.join(sorted(self.instances))}")
        return self.instances[name]

    def with_shapes(self, shapes: Mapping[str, InstanceShape]) -> Catalog:
        """This catalog plus a stack's own shapes (`shapes:`); a stack shape may not shadow a catalog one."""
        if clash := sorted(set(shapes) & set(self.instances)):
            raise CatalogError(f"shape name(s) {clash} are catalog shapes; name your own shapes differently")
        return Catalog(MappingProxyType({**self.instances, **shapes}), self.models, self.api_prices, self.sources)

    def model(self, key: str) -> CatalogModel:
        if key not in self.models:
            raise CatalogError(f"unknown model {key!r}; known: {', '.join(sorted(self.models))}")
        return self.models[key]

    def find_checkpoint(self, hf_id: str) -> tuple[CatalogModel, Checkpoint] | None:
        wanted = hf_id.strip().lower()
        for model in self.models.values():
            for checkpoint in model.checkpoints:
                if checkpoint.hf_id.lower() == wanted:
                    return model, checkpoint
        return None

    def engine_flags(self, model_key: str, engine: str, version: str) -> EngineFlags | None:
        """The entry with the highest min_version <= version, or None if the version is too old."""
        have = version_key(version)
        fits = [f for f in self.model(model_key).engine_flags
                if f.engine == engine and version_key(f.min_version) <= have]
        return max(fits, key=lambda f: version_key(f.min_version), default=None)

    def api_prices_for(self, model_key: str) -> tuple[ApiPrice, ...]:
        self.model(model_key)
        return tuple(sorted((p for p in self.api_prices if p.model == model_key),
                            key=lambda p: (p.blended_usd_per_m, p.provider)))


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


class _File:
    """One YAML file; its methods check a value at a key path and raise CatalogError naming both."""

    def __init__(self, directory: Any, name: str):
        self.name = name
        try:
            self.data = read_yaml((directory / name).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as err:
            raise CatalogError(f"{name}: cannot read: {err}") from err

    def fail(self, path: str, message: str) -> CatalogError:
        return CatalogError(f"{self.name}: {path}: {message}")

    def mapping(self, path: str, value: Any, required: tuple[str, ...] = (), optional: tuple[str, ...] = (),
                any_keys: bool = False) -> dict:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, got {type(value).__name__}")
        if not any_keys:
            allowed = set(required) | set(optional)
            if unknown := sorted(set(value) - allowed):
                raise self.fail(path, f"unknown key(s) {unknown}; allowed: {sorted(allowed)}")
        if missing := [k for k in required if k not in value]:
            raise self.fail(path, f"missing key(s) {missing}")
        return value

    def text(self, path: str, value: Any, pattern: re.Pattern | None = None, hint: str = "") -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"expected a non-empty string, got {value!r}")
        if pattern and not pattern.match(value):
            raise self.fail(path, f"{value!r} is not {hint}")
        return value

    def number(self, path: str, value: Any, *, integer: bool = False, upper: float | None = None) -> Any:
        kinds = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise self.fail(path, f"expected {'an integer' if integer else 'a number'}, got {value!r}")
        if value < 0 or (upper is not None and value > upper):
            raise self.fail(path, f"{value!r} is out of range 0..{upper if upper is not None else 'inf'}")
        return value

    def sources(self, path: str, value: Any, known: Mapping[str, Source]) -> tuple[str, ...]:
        keys = value if isinstance(value, list) else [value]
        if not keys:
            raise self.fail(path, "needs at least one source key")
        for key in keys:
            if not isinstance(key, str) or key not in known:
                raise self.fail(path, f"source {key!r} is not in sources.yaml")
        return tuple(keys)


def _load_sources(f: _File) -> dict[str, Source]:
    out = {}
    for key, raw in f.mapping("<root>", f.data, any_keys=True).items():
        raw = f.mapping(key, raw, ("title", "url", "retrieved"))
        retrieved = f.text(f"{key}.retrieved", str(raw["retrieved"]), _ISO_DATE, "an ISO date YYYY-MM-DD")
        title, url = f.text(f"{key}.title", raw["title"]), f.text(f"{key}.url", raw["url"])
        out[key] = Source(key, title, url, retrieved)
    return out


_SHAPE_KEYS = ("gpuModel", "gpuVendor", "gpuCount", "gpuMemoryMiB", "vcpus", "memoryMiB", "nvmeGB",
               "networkGbps", "efaInterfaces", "onDemandUSD", "spotDiscount", "sources")
_SHAPE_OPTIONAL = ("interconnect", "provider")


def _load_shapes(f: _File, known: Mapping[str, Source]) -> dict[str, InstanceShape]:
    out = {}
    for name, raw in f.mapping("<root>", f.data, any_keys=True).items():
        r = f.mapping(name, raw, _SHAPE_KEYS, _SHAPE_OPTIONAL)
        prices = f.mapping(f"{name}.onDemandUSD", r["onDemandUSD"], any_keys=True)
        for region, usd in prices.items():
            f.text(f"{name}.onDemandUSD", region, _REGION, "an AWS region name such as us-east-1")
            f.number(f"{name}.onDemandUSD.{region}", usd)
        ints = {k: f.number(f"{name}.{k}", r[k], integer=True)
                for k in ("gpuCount", "gpuMemoryMiB", "vcpus", "memoryMiB", "nvmeGB", "efaInterfaces")}
        out[name] = InstanceShape(
            name, f.text(f"{name}.gpuModel", r["gpuModel"]), f.text(f"{name}.gpuVendor", r["gpuVendor"]),
            ints["gpuCount"], ints["gpuMemoryMiB"], ints["vcpus"], ints["memoryMiB"], ints["nvmeGB"],
            float(f.number(f"{name}.networkGbps", r["networkGbps"])), ints["efaInterfaces"],
            MappingProxyType({k: float(v) for k, v in prices.items()}),
            float(f.number(f"{name}.spotDiscount", r["spotDiscount"], upper=1)),
            f.sources(f"{name}.sources", r["sources"], known),
            interconnect=_interconnect(f, name, r, ints["efaInterfaces"]),
            provider=f.text(f"{name}.provider", r.get("provider", "aws")))
    return out


def _interconnect(f: _File, name: str, r: dict, efa: int) -> str:
    value = r.get("interconnect", "efa" if efa else "none")
    if value not in INTERCONNECTS or (value == "efa") != (efa > 0):
        raise f.fail(f"{name}.interconnect", f"{value!r}: not in {list(INTERCONNECTS)} or not matching efaInterfaces")
    return value


def _load_models(f: _File, known: Mapping[str, Source]) -> dict[str, CatalogModel]:
    out, seen_ids = {}, {}
    keys = ("displayName", "family", "totalParamsB", "activeParamsB", "maxContext", "checkpoints",
            "config", "engines", "sources")
    for key, raw in f.mapping("<root>", f.data, any_keys=True).items():
        r = f.mapping(key, raw, keys)
        checkpoints = []
        for i, c in enumerate(r["checkpoints"] or []):
            p = f"{key}.checkpoints[{i}]"
            c = f.mapping(p, c, ("hfId", "precision"), ("quantization", "quantizationConfig"))
            hf_id = f.text(f"{p}.hfId", c["hfId"])
            if c["precision"] not in PRECISIONS:
                raise f.fail(f"{p}.precision", f"{c['precision']!r} is not one of {list(PRECISIONS)}")
            if (c["precision"] == "bf16") == ("quantization" in c):
                raise f.fail(f"{p}.quantization", "is required for fp8/int4/w8a8/w4a8 and must be absent for bf16")
            if hf_id.lower() in seen_ids:
                raise f.fail(f"{p}.hfId", f"{hf_id!r} is already listed under {seen_ids[hf_id.lower()]}")
            seen_ids[hf_id.lower()] = key
            qc = c.get("quantizationConfig")
            checkpoints.append(Checkpoint(hf_id, c["precision"], c.get("quantization"),
                                          None if qc is None else _freeze(f.mapping(p, qc, any_keys=True))))
        if not checkpoints:
            raise f.fail(f"{key}.checkpoints", "needs at least one checkpoint")
        flags = []
        for engine, entries in f.mapping(f"{key}.engines", r["engines"] or {}, optional=ENGINES).items():
            versions = set()
            for i, e in enumerate(entries or []):
                p = f"{key}.engines.{engine}[{i}]"
                e = f.mapping(p, e, ("minVersion", "args", "source"))
                minimum = f.text(f"{p}.minVersion", e["minVersion"], _VERSION, "a version like 0.19.0")
                vkey = version_key(minimum)
                if vkey in versions:
                    raise f.fail(f"{p}.minVersion", f"{e['minVersion']!r} appears twice for {engine}")
                versions.add(vkey)
                if not isinstance(e["args"], list) or not all(isinstance(a, str) for a in e["args"]):
                    raise f.fail(f"{p}.args", "expected a list of strings")
                flags.append(EngineFlags(engine, e["minVersion"], tuple(e["args"]),
                                         f.sources(f"{p}.source", e["source"], known)[0]))
        total = f.number(f"{key}.totalParamsB", r["totalParamsB"])
        active = f.number(f"{key}.activeParamsB", r["activeParamsB"])
        if active > total:
            raise f.fail(f"{key}.activeParamsB", f"{active} exceeds totalParamsB {total}")
        out[key] = CatalogModel(
            key, f.text(f"{key}.displayName", r["displayName"]), f.text(f"{key}.family", r["family"]),
            float(total), float(active), f.number(f"{key}.maxContext", r["maxContext"], integer=True),
            tuple(checkpoints), _freeze(f.mapping(f"{key}.config", r["config"], any_keys=True)),
            tuple(flags), f.sources(f"{key}.sources", r["sources"], known))
    return out


def _load_prices(f: _File, known: Mapping[str, Source], models: Mapping[str, CatalogModel]) -> tuple:
    root = f.mapping("<root>", f.data, ("prices",))
    out = []
    for i, raw in enumerate(root["prices"] or []):
        p = f"prices[{i}]"
        r = f.mapping(p, raw, ("model", "provider", "asOf", "source"),
                      ("inputUSDPerM", "outputUSDPerM", "blendedUSDPerM", "tokensPerSecond"))
        if r["model"] not in models:
            raise f.fail(f"{p}.model", f"{r['model']!r} is not a model in models.yaml")
        num = {k: None if r.get(k) is None else float(f.number(f"{p}.{k}", r[k]))
               for k in ("inputUSDPerM", "outputUSDPerM", "blendedUSDPerM", "tokensPerSecond")}
        blended = num["blendedUSDPerM"]
        if blended is None:
            if num["inputUSDPerM"] is None or num["outputUSDPerM"] is None:
                raise f.fail(p, "needs blendedUSDPerM, or both inputUSDPerM and outputUSDPerM")
            blended = (3 * num["inputUSDPerM"] + num["outputUSDPerM"]) / 4
        out.append(ApiPrice(r["model"], f.text(f"{p}.provider", r["provider"]), num["inputUSDPerM"],
                            num["outputUSDPerM"], blended, num["tokensPerSecond"],
                            f.text(f"{p}.asOf", str(r["asOf"]), _AS_OF, "an ISO date or YYYY-MM"),
                            f.sources(f"{p}.source", r["source"], known)[0]))
    return tuple(out)


def _load_from(directory: Any) -> Catalog:
    """Load and validate the four YAML files in `directory` (a Path or an importlib Traversable)."""
    sources = _load_sources(_File(directory, "sources.yaml"))
    instances = _load_shapes(_File(directory, "gpus.yaml"), sources)
    models = _load_models(_File(directory, "models.yaml"), sources)
    prices = _load_prices(_File(directory, "api_prices.yaml"), sources, models)
    return Catalog(MappingProxyType(instances), MappingProxyType(models), prices, MappingProxyType(sources))


@functools.cache
def load_catalog() -> Catalog:
    """The catalog shipped with this package (read once per process)."""
    return _load_from(resources.files(__name__))
