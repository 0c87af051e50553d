"""`shapes:` (a stack's own hardware and its price) and `storage.hubEndpoint`: parsed, cross-checked,
and every bad input refused with the key path and a way out."""

from __future__ import annotations

import pytest

from infra.stack.config import load_stack_file, parse_config
from infra.stack.reader import ConfigError
from tests.conftest import STACKS


def parse(values):
    return parse_config(values, "test")


def ascend(stack_values):
    return stack_values("onprem-ascend")


def shape(values):
    return values["llm-fleet:shapes"][0]


def test_the_ascend_stack_declares_an_amortized_shape():
    cfg = load_stack_file(STACKS / "Pulumi.onprem-ascend.yaml")
    (s,) = cfg.shapes
    assert (s.accelerator, s.count, s.interconnect, s.provider) == ("ascend", 8, "hccs-roce", "onprem")
    assert s.amortized is not None and s.hourly_usd is None
    assert cfg.storage.hub_endpoint == "modelscope"


def test_efa_is_refused_on_a_declared_shape(stack_values):
    values = ascend(stack_values)
    shape(values).update(accelerator="nvidia", interconnect="efa")
    values["llm-fleet:cluster"]["accelerator"] = "nvidia"
    with pytest.raises(ConfigError, match=r"shapes\[0\].interconnect: 'efa' exists only on AWS p-shapes.*infiniband"):
        parse(values)


@pytest.mark.parametrize("change, message", [
    ({"interconnect": "infiniband"}, r"interconnect: 'infiniband' is not an interconnect of ascend.*hccs-roce"),
    ({"rdmaResource": "rdma/hca_shared_devices_a"}, r"rdmaResource: only an infiniband or roce shape"),
    ({"hourlyUSD": 20}, r"hourlyUSD: give hourlyUSD .* not both"),
    ({"months": None}, r"shapes\[0\].months: an on-prem amortization needs all of"),
    ({"name": "atlas"}, r"shapes\[0\].name: 'atlas' is not valid; name it like an instance type"),
    ({"provider": "aws"}, r"provider: AWS shapes come from the catalog"),
    ({"colour": "red"}, r"shapes\[0\].colour: unknown key"),
])
def test_bad_shapes_are_refused(stack_values, change, message):
    values = ascend(stack_values)
    for key, value in change.items():
        if value is None:
            shape(values).pop(key)
        else:
            shape(values)[key] = value
    with pytest.raises(ConfigError, match=message):
        parse(values)


def test_a_shape_must_match_the_cluster_accelerator(stack_values):
    values = ascend(stack_values)
    values["llm-fleet:cluster"]["accelerator"] = "nvidia"
    with pytest.raises(ConfigError, match=r"'atlas-800-a2.8x' has accelerator 'ascend' but cluster.accelerator"):
        parse(values)


def test_declared_shapes_are_for_existing_clusters(stack_values):
    values = stack_values("prod")
    values["llm-fleet:shapes"] = [{"name": "hgx-h100.8x", "accelerator": "nvidia", "count": 8,
                                   "deviceMemoryGB": 80, "hourlyUSD": 20}]
    values["llm-fleet:pools"][0]["instanceTypes"] = ["hgx-h100.8x"]
    with pytest.raises(ConfigError, match=r"instanceTypes: 'hgx-h100.8x' is a declared shape.*cluster.existing"):
        parse(values)


def test_hub_endpoint(stack_values):
    values = stack_values("prod")
    values["llm-fleet:storage"] = {**values.get("llm-fleet:storage", {}), "hubEndpoint": "https://hf-mirror.com"}
    assert parse(values).storage.hub_endpoint == "https://hf-mirror.com"
    values["llm-fleet:storage"]["hubEndpoint"] = "modelscope"
    with pytest.raises(ConfigError, match=r"storage.hubEndpoint: 'modelscope' is for cluster.existing.*hf-mirror"):
        parse(values)
    values["llm-fleet:storage"]["hubEndpoint"] = "hf-mirror.com"
    with pytest.raises(ConfigError, match=r"storage.hubEndpoint: 'hf-mirror.com' is not valid; give a Hugging Face"):
        parse(values)
