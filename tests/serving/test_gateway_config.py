"""Pure tests of the gateway config generator: wiring, env references, secrets, errors."""

from __future__ import annotations

import asyncio
import importlib.util
import re
from dataclasses import replace

import pytest
import yaml

from infra.serving.gateway import (
    AUTH_HOOK_MODULE,
    HOOKS_INSTANCE,
    PROVIDER_API_BASE,
    PROVIDER_PREFIX,
    STATIC_ENV,
    Backend,
    Fallback,
    GatewayConfigError,
    GatewaySpec,
    Redis,
    Route,
    Team,
    env_vars,
    litellm_config,
)
from infra.serving.gateway_hooks import auth_hook_source, hooks_source

# importing LiteLLM makes pydantic warn about its own TypedDicts; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:.*ReadOnly.*:UserWarning")

H200 = Backend("http://glm-5-1-h200-base.llm-fleet.svc.cluster.local:8000/v1", "glm-5.1-fp8")
H200_B = Backend("http://glm-5-1-h200-burst.llm-fleet.svc.cluster.local:8000/v1", "glm-5.1-fp8")
DEEPINFRA = Fallback("deepinfra", "zai-org/GLM-5.1", "DEEPINFRA_API_KEY")


def route(model: str = "glm-5.1", backends=(H200,), fallback: Fallback | None = DEEPINFRA, **kw) -> Route:
    return Route(model, tuple(backends), fallback, kw.get("timeout", 300), kw.get("stream_timeout", 120))


SPEC = GatewaySpec(
    routes=(route(backends=(H200, H200_B)), route("glm-5", fallback=None)),
    teams=(
        Team("research", "TEAM_RESEARCH_KEY", 60, 200_000, ("glm-5.1",)),
        Team("apps", "TEAM_APPS_KEY", None, None, ()),
    ),
)


def entries(config: dict, name: str) -> list[dict]:
    return [m for m in config["model_list"] if m["model_name"] == name]


def walk(value):
    """Every (key, scalar) pair in a nested config."""
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, dict | list):
                yield from walk(v)
            else:
                yield k, v
    elif isinstance(value, list):
        for v in value:
            yield from walk(v)


def test_private_backends_are_openai_deployments_under_the_public_name():
    config = litellm_config(SPEC)
    glm51 = entries(config, "glm-5.1")
    assert [e["litellm_params"]["api_base"] for e in glm51] == [H200.url, H200_B.url]
    for e in glm51:
        params = e["litellm_params"]
        assert params["model"] == "openai/glm-5.1-fp8"
        assert params["api_key"] == "none"
        assert params["timeout"] == 300 and params["stream_timeout"] == 120
    ids = [e["model_info"]["id"] for e in config["model_list"]]
    assert len(ids) == len(set(ids)), "deployment ids must be unique"


def test_fallback_is_a_separate_deployment_wired_in_router_fallbacks():
    config = litellm_config(SPEC)
    (fb,) = entries(config, "glm-5.1-fallback")
    assert fb["litellm_params"]["model"] == "deepinfra/zai-org/GLM-5.1"
    assert fb["litellm_params"]["api_key"] == "os.environ/DEEPINFRA_API_KEY"
    # written out (LiteLLM's own default): the config names every host the gateway may call
    assert fb["litellm_params"]["api_base"] == PROVIDER_API_BASE["deepinfra"] == "https://api.deepinfra.com/v1/openai"
    assert config["router_settings"]["fallbacks"] == [{"glm-5.1": ["glm-5.1-fallback"]}]
    assert not entries(config, "glm-5-fallback"), "a route without fallback gets none"


def test_no_fallbacks_key_when_no_route_has_one():
    spec = GatewaySpec(routes=(route(fallback=None),))
    assert "fallbacks" not in litellm_config(spec)["router_settings"]


@pytest.mark.parametrize("provider", sorted(PROVIDER_PREFIX))
def test_each_provider_gets_its_litellm_prefix(provider):
    fb = Fallback(provider, "some/model", "PROVIDER_KEY", "https://api.example.com/v1")
    (entry,) = entries(litellm_config(GatewaySpec(routes=(route(fallback=fb),))), "glm-5.1-fallback")
    assert entry["litellm_params"]["model"] == f"{PROVIDER_PREFIX[provider]}/some/model"
    assert entry["litellm_params"]["api_base"] == "https://api.example.com/v1"


def test_retries_timeouts_and_pass_through_settings():
    config = litellm_config(replace(SPEC, num_retries=3, request_timeout_seconds=900))
    assert config["router_settings"]["num_retries"] == 3
    assert config["litellm_settings"]["request_timeout"] == 900
    # reasoning_content and engine-specific request fields must reach clients / engines unchanged
    assert config["litellm_settings"]["drop_params"] is False
    for m in config["model_list"]:
        assert m["litellm_params"]["merge_reasoning_content_in_choices"] is False


def test_zero_retries_stays_zero():
    assert litellm_config(replace(SPEC, num_retries=0))["router_settings"]["num_retries"] == 0


def test_every_request_needs_a_key():
    general = litellm_config(SPEC)["general_settings"]
    assert general["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    assert general["custom_auth"] == f"{AUTH_HOOK_MODULE}.user_api_key_auth"
    assert general["custom_auth_run_common_checks"] is True
    assert litellm_config(SPEC)["litellm_settings"]["enable_post_custom_auth_checks"] is True


def test_env_vars_cover_every_reference_once():
    config = litellm_config(SPEC)
    names = env_vars(SPEC)
    assert names[0] == "LITELLM_MASTER_KEY"
    assert len(names) == len(set(names))
    referenced = {v.removeprefix("os.environ/") for _, v in walk(config) if str(v).startswith("os.environ/")}
    hook_envs = set(re.findall(r"'key_env': '([A-Z0-9_]+)'", auth_hook_source(SPEC)))
    assert referenced | hook_envs | {"LITELLM_MASTER_KEY"} == set(names)
    assert {"DEEPINFRA_API_KEY", "TEAM_RESEARCH_KEY", "TEAM_APPS_KEY"} <= set(names)


def test_shared_provider_key_is_listed_once():
    spec = GatewaySpec(routes=(route(), route("glm-5")))
    assert env_vars(spec) == ("LITELLM_MASTER_KEY", "DEEPINFRA_API_KEY")


def test_no_clear_text_key_in_config_or_hook(monkeypatch):
    secrets = {name: f"sk-secret-{name.lower()}-0123456789" for name in env_vars(SPEC)}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    rendered = yaml.safe_dump(litellm_config(SPEC)) + auth_hook_source(SPEC) + hooks_source(SPEC)
    for value in secrets.values():
        assert value not in rendered
    for key, value in walk(litellm_config(SPEC)):
        if key in ("api_key", "master_key"):
            assert value == "none" or value.startswith("os.environ/"), (key, value)


def test_config_is_plain_yaml_data():
    config = litellm_config(SPEC)
    assert yaml.safe_load(yaml.safe_dump(config)) == config


def test_hook_source_compiles_and_names_no_unknown_team():
    source = auth_hook_source(SPEC)
    compile(source, "hook.py", "exec")
    assert "'name': 'research'" in source and "'rpm': 60" in source and "'tpm': None" in source
    assert "glm-5.1-fallback" not in source, "no team may call the paid fallback directly"


def test_team_without_a_model_list_gets_every_public_route_but_no_fallback():
    source = auth_hook_source(SPEC)
    assert "'models': ['glm-5.1', 'glm-5']" in source     # apps: no list -> the public routes only


def test_config_keeps_the_proxy_offline_and_metrics_open():
    config = litellm_config(SPEC)
    settings = config["litellm_settings"]
    assert settings["require_auth_for_metrics_endpoint"] is False
    assert settings["disable_hf_tokenizer_download"] is True
    assert settings["callbacks"] == ["prometheus", HOOKS_INSTANCE]
    assert STATIC_ENV["LITELLM_LOCAL_MODEL_COST_MAP"] == "True" and STATIC_ENV["HF_HUB_OFFLINE"] == "1"
    assert config["router_settings"]["retry_policy"] == {"ServiceUnavailableErrorRetries": 0,
                                                         "InternalServerErrorRetries": 0}


def test_fallback_never_model_has_no_fallback_route_and_never_teams_are_listed():
    spec = replace(SPEC, routes=(replace(route(), private_only=True), route("glm-5", fallback=None)),
                   teams=(Team("legal", "TEAM_LEGAL_KEY", None, None, (), private_only=True),))
    config = litellm_config(spec)
    assert not entries(config, "glm-5.1-fallback") and "fallbacks" not in config["router_settings"]
    assert "DEEPINFRA_API_KEY" not in env_vars(spec), "no provider key in a gateway where nothing may leave"
    hooks = hooks_source(spec)
    compile(hooks, "hooks.py", "exec")
    assert "PRIVATE_ONLY_TEAMS = frozenset(['legal'])" in hooks
    assert "'private_only': True" in hooks


def test_engine_key_and_redis_are_env_references():
    spec = replace(SPEC, engine_key_env="ENGINE_KEY", redis=Redis("redis.llm-fleet.svc", 6379, "REDIS_PASSWORD"))
    config = litellm_config(spec)
    assert {e["litellm_params"]["api_key"] for e in entries(config, "glm-5.1")} == {"os.environ/ENGINE_KEY"}
    redis = {"host": "redis.llm-fleet.svc", "port": 6379, "password": "os.environ/REDIS_PASSWORD"}
    assert config["general_settings"]["coordination_redis"] == redis       # rate limits across replicas
    rs = config["router_settings"]
    assert (rs["redis_host"], rs["redis_port"], rs["redis_password"]) == tuple(redis.values())
    assert {"ENGINE_KEY", "REDIS_PASSWORD"} <= set(env_vars(spec))
    assert "redis_host" not in litellm_config(SPEC)["router_settings"], "Redis is off by default"
    assert "coordination_redis" not in litellm_config(SPEC)["general_settings"]


BAD = [
    (replace(SPEC, routes=()), "gateway.routes"),
    (replace(SPEC, routes=(route(), route())), "already used"),
    (replace(SPEC, routes=(route(), route("glm-5.1-fallback", fallback=None))), "already used"),
    (replace(SPEC, routes=(route(backends=()),)), "backends"),
    (replace(SPEC, routes=(route(backends=(Backend("glm:8000/v1", "m"),)),)), "http(s) URL"),
    (replace(SPEC, routes=(route(fallback=Fallback("openai-compatible", "m", "K")),)), "api_base: required"),
    (replace(SPEC, routes=(route(fallback=Fallback("zai", "glm-5.1", "ZAI_KEY")),)), "api_base: required"),
    (replace(SPEC, routes=(route(fallback=Fallback("bedrock", "m", "K")),)), "fallback.provider"),
    (replace(SPEC, routes=(route(fallback=Fallback("deepinfra", "m", "lower-case")),)), "api_key_env"),
    (replace(SPEC, routes=(route(fallback=Fallback("deepinfra", "m", "LITELLM_MASTER_KEY")),)), "master_key_env"),
    (replace(SPEC, engine_key_env="LITELLM_MASTER_KEY"), "engine_key_env"),
    (replace(SPEC, redis=Redis("", 6379)), "gateway.redis.host"),
    (replace(SPEC, routes=(route(timeout=0),)), "timeout_seconds"),
    (replace(SPEC, routes=(route(stream_timeout=-5),)), "stream_timeout_seconds"),
    (replace(SPEC, num_retries=-1), "num_retries"),
    (replace(SPEC, request_timeout_seconds=0), "request_timeout_seconds"),
    (replace(SPEC, master_key_env="master key"), "master_key_env"),
    (replace(SPEC, teams=(Team("a", "A_KEY", None, None, ("glm-9",)),)), "not routes"),
    (replace(SPEC, teams=(Team("a", "A", None, None, ()), Team("a", "B", None, None, ()))), "duplicate"),
    (replace(SPEC, teams=(Team("a", "LITELLM_MASTER_KEY", None, None, ()),)), "already used"),
    (replace(SPEC, teams=(Team("a", "K", None, None, ()), Team("b", "K", None, None, ()))), "already used"),
    (replace(SPEC, teams=(Team("a", "DEEPINFRA_API_KEY", None, None, ()),)), "fallback provider key"),
    (replace(SPEC, teams=(Team("a", "A_KEY", 0, None, ()),)), "rpm"),
    (replace(SPEC, teams=(Team("a", "A_KEY", None, -1, ()),)), "tpm"),
]


@pytest.mark.parametrize(("spec", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_specs_are_refused_with_a_message_naming_the_problem(spec, message):
    for produce in (litellm_config, env_vars, auth_hook_source, hooks_source):
        with pytest.raises(GatewayConfigError, match=re.escape(message)):
            produce(spec)


def test_error_names_the_key_path():
    with pytest.raises(GatewayConfigError, match=r"gateway\.teams\[0\] \('a'\)\.models"):
        litellm_config(replace(SPEC, teams=(Team("a", "A_KEY", None, None, ("glm-9",)),)))


# --- the generated auth hook, called directly (needs LiteLLM, a dev dependency) ---


@pytest.fixture
def hook(tmp_path, monkeypatch):
    pytest.importorskip("litellm.proxy._types", reason="litellm[proxy] is a dev dependency")
    path = tmp_path / "hook.py"
    path.write_text(auth_hook_source(SPEC))
    module_spec = importlib.util.spec_from_file_location("llmfleet_hook_under_test", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    monkeypatch.setenv("LITELLM_MASTER_KEY", "sk-master")
    monkeypatch.setenv("TEAM_RESEARCH_KEY", "sk-research")
    monkeypatch.delenv("TEAM_APPS_KEY", raising=False)  # unset: must match nothing
    return lambda key: asyncio.run(module.user_api_key_auth(None, key))


def test_hook_master_key_is_admin_under_an_alias(hook):
    from litellm.proxy._types import LitellmUserRoles

    auth = hook("sk-master")
    assert auth.user_role == LitellmUserRoles.PROXY_ADMIN
    assert "sk-master" not in auth.model_dump_json()


def test_hook_team_key_carries_its_limits(hook):
    auth = hook("sk-research")
    limits = (auth.key_alias, auth.rpm_limit, auth.tpm_limit, auth.models)
    assert limits == ("research", 60, 200_000, ["glm-5.1"])
    assert auth.allowed_routes == ["llm_api_routes"]
    assert "sk-research" not in auth.model_dump_json()


@pytest.mark.parametrize("key", ["", "sk-wrong", "sk-master ", "sk-researc"])
def test_hook_refuses_anything_else_with_401(hook, key):
    from litellm.proxy._types import ProxyException

    with pytest.raises(ProxyException) as err:
        hook(key)
    assert str(err.value.code) == "401"
