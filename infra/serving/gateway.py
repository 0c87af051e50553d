"""The OpenAI-compatible gateway: LiteLLM proxy configuration built from a typed spec (pure, no Pulumi).

`litellm_config(spec)` returns the proxy's config.yaml as a dict; `gateway_hooks.module_sources(spec)`
returns the two Python modules that sit next to it (the auth hook and the request hooks); `env_vars(spec)`
lists every environment variable they reference, so the Deployment can fill each from a Secret;
`STATIC_ENV` is the plain env the proxy also needs. Pinned and tested against LiteLLM 1.106.2
(tests/serving/test_gateway_live.py runs the real proxy on the files the program renders).

Routing. Each model has ONE private deployment: the model's engine Service, which selects the pods of
all its placements (base, spot, peak), so kube-proxy sends only to Ready replicas and LiteLLM never
picks a placement that is at zero. The managed fallback is a separate deployment named
`<model>-fallback`, wired in `router_settings.fallbacks`, so LiteLLM calls it only after the private
group fails: an error, a timeout, or no Ready replica (connection refused, 503), streaming included
when the first chunk does not come within `stream_timeout`. `num_retries` retries the private group
first, so a hung backend costs about (num_retries + 1) x timeout before the fallback answers.
`merge_reasoning_content_in_choices: false` and `drop_params: false` keep `reasoning_content` and
engine-specific request fields (e.g. `chat_template_kwargs`) passing through unchanged.

Data residency. A model with `fallback: never` gets no fallback deployment at all; a team with
`fallback: never` has fallbacks disabled on each of its requests by the request hook. Either way,
when no private replica answers the gateway says 503 with Retry-After and a message, never a leak.

Team keys: a LiteLLM custom auth hook, not virtual keys. LiteLLM's virtual keys (`/key/generate`,
per-key rpm/tpm/models) live in Postgres (DATABASE_URL); without a database the stock auth accepts
only the master key, and answers a wrong key with 400 "No connected db." rather than 401. The documented
`general_settings.custom_auth` hook replaces that check: the generated module compares the presented
key, in constant time, with the master key and each team's key read from the pod's environment
(Secrets), and returns LiteLLM's own `UserAPIKeyAuth` carrying the team's `rpm_limit`, `tpm_limit`
and `models` (a team without a list gets every public route, never a `*-fallback` one); LiteLLM
enforces those limits itself (the model allowlist through `enable_post_custom_auth_checks` +
`custom_auth_run_common_checks`); team keys are limited to the inference routes; anything else
gets 401. Rate-limit counters are per replica (in memory) unless `gateway.redis` is set: with N
gateway replicas and no Redis a team can reach N x its limit (README, "Gateway").

Offline at run time (LiteLLM 1.106.2 source): the cost map, Anthropic beta headers and the other
bundled JSON maps come from the package (`LITELLM_LOCAL_*` env), tokenizers are never downloaded
(`disable_hf_tokenizer_download`: LiteLLM selects a Hugging Face tokenizer for model names with
`llama-3`, `llama-2`, ... and fetched it on the error path), and `HF_HUB_OFFLINE` stops any hub
client. LiteLLM 1.106 has no telemetry left to turn off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

AUTH_HOOK_MODULE = "llmfleet_gateway_auth"
AUTH_HOOK_FILE = f"{AUTH_HOOK_MODULE}.py"
HOOKS_MODULE = "llmfleet_gateway_hooks"
HOOKS_FILE = f"{HOOKS_MODULE}.py"
HOOKS_INSTANCE = f"{HOOKS_MODULE}.proxy_hooks"
# Counted by the request hook after auth and the model allowlist passed, under the public model name
# whichever route serves it: the wake-from-zero demand and the dashboard's request totals.
DEMAND_METRIC = "llmfleet_gateway_requests_total"
# Plain (non-secret) env that keeps the proxy offline (each read in LiteLLM 1.106.2: the model cost
# map, Anthropic beta headers, policy templates, autorouter presets and blog posts are otherwise
# fetched from GitHub) and off the hub; the admin UI needs the database we do not run.
STATIC_ENV: dict[str, str] = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "HF_HUB_OFFLINE": "1",
    "DISABLE_ADMIN_UI": "True",
}
# Engines without an API key still need one set: LiteLLM's OpenAI client requires it.
DUMMY_BACKEND_KEY = "none"
FALLBACK_SUFFIX = "-fallback"
RETRY_AFTER_SECONDS = 60

# provider -> LiteLLM model prefix (litellm.types.utils.LlmProviders values)
PROVIDER_PREFIX: dict[str, str] = {
    "deepinfra": "deepinfra",
    "fireworks": "fireworks_ai",
    "together": "together_ai",
    "zai": "zai",
    "openai-compatible": "openai",
}
# LiteLLM 1.106.2's own default endpoints, written out so the config names every host the gateway may
# call (an egress allowlist can be read off it) and a test can point each at loopback.
PROVIDER_API_BASE: dict[str, str] = {
    "deepinfra": "https://api.deepinfra.com/v1/openai",
    "fireworks": "https://api.fireworks.ai/inference/v1",
    "together": "https://api.together.xyz/v1",
}
# Z.ai has several endpoints (international, mainland, coding plan): make the choice explicit.
PROVIDERS_NEEDING_API_BASE = frozenset({"openai-compatible", "zai"})

_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")


class GatewayConfigError(ValueError):
    """The gateway spec cannot produce a working proxy config; the message says where and why."""


@dataclass(frozen=True)
class Backend:
    url: str  # OpenAI base URL of the model's in-cluster engine Service, ending in /v1
    served_model: str  # the engine's --served-model-name


@dataclass(frozen=True)
class Fallback:
    provider: str  # a key of PROVIDER_PREFIX
    model: str  # the provider's model id, e.g. "zai-org/GLM-5.1"
    api_key_env: str  # env var in the gateway pod holding the provider key
    api_base: str | None = None  # required for "openai-compatible" and "zai"


@dataclass(frozen=True)
class Route:
    model: str  # public model name clients ask for
    backends: tuple[Backend, ...]
    fallback: Fallback | None
    timeout_seconds: int  # per request to a private backend
    # streaming: the wait for the first chunk (an httpx read timeout, so also the longest gap
    # between chunks); it must cover queueing plus prefill of the longest prompt
    stream_timeout_seconds: int
    private_only: bool = False  # the model's `fallback: never`: no request for it leaves the cluster
    cold_start_seconds: int | None = None  # the planner's cold start of one replica, for the 503 message


@dataclass(frozen=True)
class Team:
    name: str
    key_env: str  # env var holding this team's API key
    rpm: int | None  # requests per minute for this key; None = no limit
    tpm: int | None  # tokens per minute for this key; None = no limit
    models: tuple[str, ...]  # public models this key may call; empty = every public route
    private_only: bool = False  # the team's `fallback: never`: its requests never go to a fallback


@dataclass(frozen=True)
class Redis:
    """Shared rate-limit counters across gateway replicas (LiteLLM router_settings.redis_*)."""
    host: str
    port: int
    password_env: str | None = None


@dataclass(frozen=True)
class GatewaySpec:
    routes: tuple[Route, ...]
    teams: tuple[Team, ...] = ()
    master_key_env: str = "LITELLM_MASTER_KEY"
    num_retries: int = 1
    request_timeout_seconds: int = 600
    engine_key_env: str | None = None  # env var with the engines' API key; None: engines take no key
    redis: Redis | None = None


def fallback_model_name(model: str) -> str:
    return f"{model}{FALLBACK_SUFFIX}"


def effective_fallback(route: Route) -> Fallback | None:
    """`fallback: never` on the model wins over its fallback list."""
    return None if route.private_only else route.fallback


def litellm_config(spec: GatewaySpec) -> dict:
    """The proxy's config.yaml as a dict (the caller yaml-dumps it). Secrets appear only as
    `os.environ/<NAME>` references."""
    validate(spec)
    model_list: list[dict] = []
    fallbacks: list[dict] = []
    backend_key = DUMMY_BACKEND_KEY if spec.engine_key_env is None else f"os.environ/{spec.engine_key_env}"
    for route in spec.routes:
        for index, backend in enumerate(route.backends):
            model_list.append({
                "model_name": route.model,
                "litellm_params": {
                    "model": f"openai/{backend.served_model}",
                    "api_base": backend.url,
                    "api_key": backend_key,
                    **_timeouts(route),
                },
                "model_info": {"id": f"{route.model}/private/{index}"},
            })
        fb = effective_fallback(route)
        if fb is not None:
            name = fallback_model_name(route.model)
            params = {
                "model": f"{PROVIDER_PREFIX[fb.provider]}/{fb.model}",
                "api_key": f"os.environ/{fb.api_key_env}",
                "api_base": fb.api_base or PROVIDER_API_BASE[fb.provider],
                **_timeouts(route),
            }
            model_list.append({"model_name": name, "litellm_params": params, "model_info": {"id": name}})
            fallbacks.append({route.model: [name]})
    # a refused connection (no Ready endpoint behind the Service; LiteLLM 1.106 reports it as an
    # InternalServerError) or a 503 (an engine loading or draining) will not heal within a backoff:
    # answer from the fallback, or 503, at once; timeouts and other errors are retried num_retries times
    router_settings: dict = {"routing_strategy": "simple-shuffle", "num_retries": spec.num_retries,
                             "retry_policy": {"ServiceUnavailableErrorRetries": 0, "InternalServerErrorRetries": 0}}
    if fallbacks:
        router_settings["fallbacks"] = fallbacks
    general_settings: dict = {
        "master_key": f"os.environ/{spec.master_key_env}",
        "custom_auth": f"{AUTH_HOOK_MODULE}.user_api_key_auth",
        "custom_auth_run_common_checks": True,
    }
    if spec.redis is not None:
        redis = {"host": spec.redis.host, "port": spec.redis.port}
        if spec.redis.password_env is not None:
            redis["password"] = f"os.environ/{spec.redis.password_env}"
        # LiteLLM 1.106: `coordination_redis` holds the rate-limit counters (and usage) for every replica;
        # the router's own copy shares deployment cooldowns
        general_settings["coordination_redis"] = redis
        router_settings.update({f"redis_{k}": v for k, v in redis.items()})
    return {
        "model_list": model_list,
        "router_settings": router_settings,
        "litellm_settings": {
            "request_timeout": spec.request_timeout_seconds,
            "drop_params": False,
            # run LiteLLM's key checks (model allowlist) on what the auth hook returns
            "enable_post_custom_auth_checks": True,
            # /metrics for the ServiceMonitor: series only, no prompt or key (LiteLLM 1.106 asks for a key)
            "require_auth_for_metrics_endpoint": False,
            # token counts use the bundled tiktoken encoding, never a tokenizer fetched from the hub
            "disable_hf_tokenizer_download": True,
            # LiteLLM's series, then ours: demand after auth, fallback policy, 503 for no replica
            "callbacks": ["prometheus", HOOKS_INSTANCE],
        },
        "general_settings": general_settings,
    }


def env_vars(spec: GatewaySpec) -> tuple[str, ...]:
    """Every env var the config and the hooks read, master key first, each once."""
    validate(spec)
    names = [spec.master_key_env]
    if spec.engine_key_env is not None:
        names.append(spec.engine_key_env)
    names += [fb.api_key_env for r in spec.routes if (fb := effective_fallback(r)) is not None]
    names += [t.key_env for t in spec.teams]
    if spec.redis is not None and spec.redis.password_env is not None:
        names.append(spec.redis.password_env)
    return tuple(dict.fromkeys(names))


def validate(spec: GatewaySpec) -> None:
    """Raise GatewayConfigError naming the first problem found."""
    if not spec.routes:
        raise GatewayConfigError("gateway.routes: at least one route is needed")
    _check_env("gateway.master_key_env", spec.master_key_env)
    _check_positive("gateway.request_timeout_seconds", spec.request_timeout_seconds)
    if not isinstance(spec.num_retries, int) or spec.num_retries < 0:
        raise GatewayConfigError(f"gateway.num_retries: {spec.num_retries!r} must be an integer >= 0")
    public: dict[str, str] = {}

    def claim(name: str, where: str) -> None:
        if name in public:
            raise GatewayConfigError(f"{where}: model name {name!r} is already used by {public[name]}")
        public[name] = where

    key_envs: dict[str, str] = {spec.master_key_env: "gateway.master_key_env"}
    for where, name in (("gateway.engine_key_env", spec.engine_key_env),
                        ("gateway.redis.password_env", spec.redis.password_env if spec.redis else None)):
        if name is None:
            continue
        _check_env(where, name)
        if name in key_envs:
            raise GatewayConfigError(f"{where}: {name} is already used by {key_envs[name]}")
        key_envs[name] = where
    if spec.redis is not None:
        if not spec.redis.host:
            raise GatewayConfigError("gateway.redis.host: must not be empty")
        _check_positive("gateway.redis.port", spec.redis.port)
    for i, route in enumerate(spec.routes):
        where = f"gateway.routes[{i}] ({route.model!r})"
        if not isinstance(route.model, str) or not _MODEL_NAME.match(route.model):
            raise GatewayConfigError(f"{where}.model: {route.model!r} is not a usable model name")
        claim(route.model, where)
        if not route.backends:
            raise GatewayConfigError(f"{where}.backends: at least one private backend is needed")
        for j, backend in enumerate(route.backends):
            if not backend.url.startswith(("http://", "https://")):
                raise GatewayConfigError(f"{where}.backends[{j}].url: {backend.url!r} must be an http(s) URL")
            if not backend.served_model:
                raise GatewayConfigError(f"{where}.backends[{j}].served_model: must not be empty")
        _check_positive(f"{where}.timeout_seconds", route.timeout_seconds)
        _check_positive(f"{where}.stream_timeout_seconds", route.stream_timeout_seconds)
        fb = effective_fallback(route)
        if fb is None:
            continue
        if fb.provider not in PROVIDER_PREFIX:
            raise GatewayConfigError(
                f"{where}.fallback.provider: {fb.provider!r} is not one of {sorted(PROVIDER_PREFIX)}"
            )
        if not fb.model:
            raise GatewayConfigError(f"{where}.fallback.model: must not be empty")
        if fb.provider in PROVIDERS_NEEDING_API_BASE and not fb.api_base:
            raise GatewayConfigError(f"{where}.fallback.api_base: required for provider {fb.provider!r}")
        if fb.api_base is not None and not fb.api_base.startswith(("http://", "https://")):
            raise GatewayConfigError(f"{where}.fallback.api_base: {fb.api_base!r} must be an http(s) URL")
        _check_env(f"{where}.fallback.api_key_env", fb.api_key_env)
        if fb.api_key_env in key_envs:
            raise GatewayConfigError(
                f"{where}.fallback.api_key_env: {fb.api_key_env} is {key_envs[fb.api_key_env]}; "
                "the gateway would send it to the provider"
            )
        claim(fallback_model_name(route.model), f"{where}.fallback")
    routes = {r.model for r in spec.routes}
    provider_envs = {fb.api_key_env for r in spec.routes if (fb := effective_fallback(r)) is not None}
    names: set[str] = set()
    for i, team in enumerate(spec.teams):
        where = f"gateway.teams[{i}] ({team.name!r})"
        if not team.name or not _MODEL_NAME.match(team.name):
            raise GatewayConfigError(f"{where}.name: {team.name!r} is not a usable name")
        if team.name in names:
            raise GatewayConfigError(f"{where}.name: duplicate team {team.name!r}")
        names.add(team.name)
        _check_env(f"{where}.key_env", team.key_env)
        if team.key_env in key_envs:
            raise GatewayConfigError(
                f"{where}.key_env: {team.key_env} is already used by {key_envs[team.key_env]}"
            )
        if team.key_env in provider_envs:
            raise GatewayConfigError(
                f"{where}.key_env: {team.key_env} also holds a fallback provider key; give the team its own"
            )
        key_envs[team.key_env] = where
        for field_name in ("rpm", "tpm"):
            value = getattr(team, field_name)
            if value is not None:
                _check_positive(f"{where}.{field_name}", value, hint="; use null for no limit")
        unknown = [m for m in team.models if m not in routes]
        if unknown:
            raise GatewayConfigError(
                f"{where}.models: {unknown} are not routes; known models are {sorted(routes)}"
            )


def _timeouts(route: Route) -> dict:
    return {"timeout": route.timeout_seconds, "stream_timeout": route.stream_timeout_seconds,
            "merge_reasoning_content_in_choices": False}


def _check_env(where: str, name: str) -> None:
    if not isinstance(name, str) or not _ENV_NAME.match(name):
        raise GatewayConfigError(f"{where}: {name!r} is not an environment variable name (A-Z, 0-9, _)")


def _check_positive(where: str, value: object, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise GatewayConfigError(f"{where}: {value!r} must be a positive integer{hint}")
