"""The OpenAI-compatible gateway: LiteLLM proxy configuration built from a typed spec (pure, no Pulumi).

`litellm_config(spec)` returns the proxy's config.yaml as a dict; `auth_hook_source(spec)` returns
the Python module that must sit next to it (file `AUTH_HOOK_FILE`, same directory, e.g. one
ConfigMap holding both); `env_vars(spec)` lists every environment variable the two reference, so
the Deployment can fill each from a Secret; `STATIC_ENV` is the plain env the proxy also needs.
Pinned and tested against LiteLLM 1.106.2 (tests/serving/test_gateway_live.py runs the real proxy).

Routing. Each route's private backends are `openai/<served model>` deployments under the public
model name (LiteLLM load-balances deployments that share a name). The managed fallback is a
separate deployment named `<model>-fallback`, wired in `router_settings.fallbacks`, so LiteLLM
calls it after the private group fails: an error, a timeout, or no replicas (connection refused,
503), streaming included when the first chunk does not come within `stream_timeout` (a stream
that breaks midway is LiteLLM's mid-stream fallback, not tested here). `num_retries` retries the
private group first, so a hung backend costs about (num_retries + 1) x timeout before the
fallback answers.
`merge_reasoning_content_in_choices: false` and `drop_params: false` keep `reasoning_content` and
engine-specific request fields (e.g. `chat_template_kwargs`) passing through unchanged.

Team keys: a LiteLLM custom auth hook, not virtual keys. LiteLLM's virtual keys (`/key/generate`,
per-key rpm/tpm/models) live in Postgres (DATABASE_URL); without a database the stock auth accepts
only the master key, and answers a wrong key with 400 "No connected db." (and a missing key with 500
when the optional `prisma` package is absent, as in a pip install) rather than 401. The documented
`general_settings.custom_auth` hook replaces that check: the generated module compares the presented
key, in constant time, with the master key and each team's key read from the pod's environment
(Secrets), and returns LiteLLM's own `UserAPIKeyAuth` carrying the team's `rpm_limit`, `tpm_limit`
and `models`; LiteLLM enforces those limits itself (its parallel-request limiter; the model
allowlist through `enable_post_custom_auth_checks` + `custom_auth_run_common_checks`); team keys are
limited to the inference routes (`allowed_routes: llm_api_routes`); anything else gets 401. We chose
this over an in-cluster Postgres because the team list is small and already lives in the stack
config: keys stay in Secrets, the gateway stays stateless, and nothing has to provision keys after
deploy. The cost: no per-key spend ledger or admin UI, a key rotates by changing its Secret and
rolling the Deployment, and rate-limit counters are per replica (in memory), so with N gateway
replicas a team can reach N x its limit unless LiteLLM is given Redis.
"""

from __future__ import annotations

import pprint
import re
from dataclasses import dataclass

AUTH_HOOK_MODULE = "llmfleet_gateway_auth"
AUTH_HOOK_FILE = f"{AUTH_HOOK_MODULE}.py"
# Plain (non-secret) env the proxy needs: use the bundled model cost map instead of fetching it
# from GitHub at startup (private clusters may have no egress, and startup should not depend on it).
# The admin UI needs the database we do not run, so it is switched off.
STATIC_ENV: dict[str, str] = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "DISABLE_ADMIN_UI": "True"}
# In-cluster engines ask for no key, but LiteLLM's OpenAI client requires one to be set.
DUMMY_BACKEND_KEY = "none"
FALLBACK_SUFFIX = "-fallback"

# provider -> LiteLLM model prefix (litellm.types.utils.LlmProviders values)
PROVIDER_PREFIX: dict[str, str] = {
    "deepinfra": "deepinfra",
    "fireworks": "fireworks_ai",
    "together": "together_ai",
    "zai": "zai",
    "openai-compatible": "openai",
}
# Z.ai has several endpoints (international, mainland, coding plan): make the choice explicit.
PROVIDERS_NEEDING_API_BASE = frozenset({"openai-compatible", "zai"})

_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")


class GatewayConfigError(ValueError):
    """The gateway spec cannot produce a working proxy config; the message says where and why."""


@dataclass(frozen=True)
class Backend:
    url: str  # OpenAI base URL of an in-cluster engine Service, ending in /v1
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


@dataclass(frozen=True)
class Team:
    name: str
    key_env: str  # env var holding this team's API key
    rpm: int | None  # requests per minute for this key; None = no limit
    tpm: int | None  # tokens per minute for this key; None = no limit
    models: tuple[str, ...]  # public models this key may call; empty = all


@dataclass(frozen=True)
class GatewaySpec:
    routes: tuple[Route, ...]
    teams: tuple[Team, ...] = ()
    master_key_env: str = "LITELLM_MASTER_KEY"
    num_retries: int = 1
    request_timeout_seconds: int = 600


def fallback_model_name(model: str) -> str:
    return f"{model}{FALLBACK_SUFFIX}"


def litellm_config(spec: GatewaySpec) -> dict:
    """The proxy's config.yaml as a dict (the caller yaml-dumps it). Secrets appear only as
    `os.environ/<NAME>` references."""
    validate(spec)
    model_list: list[dict] = []
    fallbacks: list[dict] = []
    for route in spec.routes:
        for index, backend in enumerate(route.backends):
            model_list.append({
                "model_name": route.model,
                "litellm_params": {
                    "model": f"openai/{backend.served_model}",
                    "api_base": backend.url,
                    "api_key": DUMMY_BACKEND_KEY,
                    **_timeouts(route),
                },
                "model_info": {"id": f"{route.model}/private/{index}"},
            })
        if route.fallback is not None:
            name = fallback_model_name(route.model)
            fb = route.fallback
            params = {
                "model": f"{PROVIDER_PREFIX[fb.provider]}/{fb.model}",
                "api_key": f"os.environ/{fb.api_key_env}",
                **_timeouts(route),
            }
            if fb.api_base is not None:
                params["api_base"] = fb.api_base
            model_list.append({"model_name": name, "litellm_params": params, "model_info": {"id": name}})
            fallbacks.append({route.model: [name]})
    router_settings: dict = {"routing_strategy": "simple-shuffle", "num_retries": spec.num_retries}
    if fallbacks:
        router_settings["fallbacks"] = fallbacks
    return {
        "model_list": model_list,
        "router_settings": router_settings,
        "litellm_settings": {
            "request_timeout": spec.request_timeout_seconds,
            "drop_params": False,
            # run LiteLLM's key checks (model allowlist) on what the auth hook returns
            "enable_post_custom_auth_checks": True,
        },
        "general_settings": {
            "master_key": f"os.environ/{spec.master_key_env}",
            "custom_auth": f"{AUTH_HOOK_MODULE}.user_api_key_auth",
            "custom_auth_run_common_checks": True,
        },
    }


def env_vars(spec: GatewaySpec) -> tuple[str, ...]:
    """Every env var the config and the auth hook read, master key first, each once."""
    validate(spec)
    names = [spec.master_key_env]
    names += [r.fallback.api_key_env for r in spec.routes if r.fallback is not None]
    names += [t.key_env for t in spec.teams]
    return tuple(dict.fromkeys(names))


def auth_hook_source(spec: GatewaySpec) -> str:
    """Source of the custom auth module (file AUTH_HOOK_FILE next to config.yaml). It holds env
    var names and limits, never a key."""
    validate(spec)
    # Router fallbacks from the config bypass the key's model allowlist (checked live), so a team
    # limited to "glm-5.1" is still served by "glm-5.1-fallback" but cannot call it directly.
    teams = [
        {"name": t.name, "key_env": t.key_env, "rpm": t.rpm, "tpm": t.tpm, "models": list(t.models)}
        for t in spec.teams
    ]
    return _HOOK_TEMPLATE.format(
        master_key_env=repr(spec.master_key_env),
        teams=pprint.pformat(teams, sort_dicts=True, width=100),
    )


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
        fb = route.fallback
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
        if fb.api_key_env == spec.master_key_env:
            raise GatewayConfigError(
                f"{where}.fallback.api_key_env: {fb.api_key_env} is the master key; "
                "the gateway would send it to the provider"
            )
        claim(fallback_model_name(route.model), f"{where}.fallback")
    routes = {r.model for r in spec.routes}
    provider_envs = {r.fallback.api_key_env for r in spec.routes if r.fallback is not None}
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


_HOOK_TEMPLATE = '''\
"""LiteLLM custom auth for the llm-fleet gateway. Generated by infra/serving/gateway.py: do not edit.

Accepts the master key and each team key, read from the environment (filled from Secrets), and
returns LiteLLM's UserAPIKeyAuth with the team's limits; LiteLLM enforces them. Everything else
gets 401. No key ever appears in this file or in what it returns.
"""

import os
import secrets

from fastapi import Request
from litellm.proxy._types import LitellmUserRoles, ProxyException, UserAPIKeyAuth

MASTER_KEY_ENV = {master_key_env}
TEAMS = {teams}


def _matches(presented: str, env_name: str) -> bool:
    expected = os.environ.get(env_name, "")
    # an unset or empty variable must never match an empty key
    return bool(expected) and secrets.compare_digest(presented.encode(), expected.encode())


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    presented = api_key or ""
    if presented and _matches(presented, MASTER_KEY_ENV):
        # identity is an alias, so neither the key nor its hash reaches logs or limiter buckets
        return UserAPIKeyAuth(
            api_key="llmfleet-master-key",
            key_alias="master",
            user_id="llmfleet-admin",
            user_role=LitellmUserRoles.PROXY_ADMIN,
        )
    for team in TEAMS:
        if presented and _matches(presented, team["key_env"]):
            return UserAPIKeyAuth(
                api_key="llmfleet-team-" + team["name"],
                key_alias=team["name"],
                user_id="team-" + team["name"],
                user_role=LitellmUserRoles.INTERNAL_USER,
                rpm_limit=team["rpm"],
                tpm_limit=team["tpm"],
                models=list(team["models"]),
                allowed_routes=["llm_api_routes"],  # inference only: no admin or key routes
                metadata={{"team": team["name"]}},
            )
    raise ProxyException(
        message="Authentication Error: missing or invalid API key",
        type="auth_error",
        param="api_key",
        code=401,
    )
'''
