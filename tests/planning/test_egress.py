"""`fleet plan`'s list of whose requests may leave the cluster: `fallback: never` on a team or a model wins."""

from __future__ import annotations

from infra.planning.plan import egress
from infra.stack.config import parse_config


def test_model_never_keeps_every_team_in_the_cluster(stack_values):
    values = stack_values("prod")
    values["llm-fleet:models"][0]["fallback"] = "never"
    lines = egress(parse_config(values, "prod"))
    assert lines == ("team risk: nothing leaves the cluster", "team research: nothing leaves the cluster",
                     "team legal: nothing leaves the cluster (fallback: never)",
                     "master key: nothing leaves the cluster")


def test_shipped_prod_lets_only_allowed_teams_leave_for_the_fallback(stack_values):
    lines = egress(parse_config(stack_values("prod"), "prod"))
    assert lines[0] == "team risk: glm-5-1 -> deepinfra (zai-org/GLM-5.1)"
    assert "team legal: nothing leaves the cluster (fallback: never)" in lines
