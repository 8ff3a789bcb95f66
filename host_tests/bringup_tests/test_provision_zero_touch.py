"""tools/bringup/provision.py with the self-provisioning keys: a zero-touch config.json (no token,
REPROVISION=1, DEVICE_ID=...) that the firmware's own validator accepts (CPython)."""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest
from bringup import boards, provision

ZERO_TOUCH = {"API_URL": "http://192.168.1.20:8080", "PROVISIONING_TOKEN": "p" * 40,
              "REPROVISION": "1", "DEVICE_ID": "greenhouse-07", "WIFI_SSID": "lab",
              "WIFI_PASSWORD": "correct horse"}


def test_zero_touch_config_from_make_variables() -> None:
    fw_config: Any = importlib.import_module("regtoken.config")
    cfg, _ = provision.validate(provision.gather(None, None, ZERO_TOUCH), boards.load("esp32"))
    assert cfg["reprovision"] is True and cfg["device_id"] == "greenhouse-07"
    assert "initial_token" not in cfg
    checked = fw_config.validate(json.loads(json.dumps(cfg)))
    assert checked["reprovision"] is True and checked["device_id"] == "greenhouse-07"
    assert any("device_id" in line for line in provision.describe(cfg, None))


@pytest.mark.parametrize("over,message", [
    ({"DEVICE_ID": "abc"}, "device_id: must be 4-90 chars of 0-9 a-z A-Z"),
    ({"DEVICE_ID": "has space"}, "device_id: must be 4-90 chars of 0-9 a-z A-Z"),
    ({"REPROVISION": "maybe"}, "reprovision: 'maybe' is not true or false"),
    ({"PROVISIONING_TOKEN": ""}, "reprovision: needs a provisioning_token"),
])
def test_bad_zero_touch_values_are_named(over: dict[str, str], message: str) -> None:
    env = dict(ZERO_TOUCH, **over)
    with pytest.raises(provision.ProvisionError, match=message):
        provision.validate(provision.gather(None, None, env), boards.load("esp32"))
