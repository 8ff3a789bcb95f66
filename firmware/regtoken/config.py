# config.json: read, validate, fill defaults. A bad file stops the device with one message
# naming the key; nothing here touches the token store.
import json

from . import ConfigError
from .answer import valid_token
from .dates import rfc3339

DEFAULTS = {
    "initial_token": None,
    "provisioning_token": None,
    "ca_file": None,
    "tls_verify": True,
    "wifi": None,
    "timeout_s": 15,
    "backoff_min_s": 5,
    "backoff_max_s": 240,
    "store_dir": "",
    "transport": "wire",
    "sleep": "none",
    "led": None,
    "reprovision": False,
    "device_id": None,
}


def _bad(key, why):
    return ConfigError("config.json: '%s' %s" % (key, why))


def _number(cfg, key, lo, hi):
    v = cfg[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise _bad(key, "must be a number from %s to %s" % (lo, hi))


def validate(raw):
    """A checked copy of the config dict with defaults filled in; raises ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError("config.json: must be a JSON object")
    cfg = dict(DEFAULTS)
    for k in raw:
        if k not in DEFAULTS and k not in ("api_url", "initial_expiration") and k[:1] != "_":
            raise _bad(k, "is not a known key")
        cfg[k] = raw[k]
    url = cfg.get("api_url")
    if not isinstance(url, str) or url.split("://")[0] not in ("http", "https") or \
            len(url.split("/")) < 3 or not url.split("/")[2] or " " in url:
        raise _bad("api_url", "must be an http:// or https:// URL")
    cfg["api_url"] = url.rstrip("/")
    https = url.startswith("https://")
    for key in ("initial_token", "provisioning_token"):
        if cfg[key] is not None and not valid_token(cfg[key]):
            raise _bad(key, "must be printable ASCII without spaces, at most 1024 characters")
    if "initial_expiration" in raw:
        try:
            cfg["initial_expiration"] = rfc3339(raw["initial_expiration"])
        except ValueError:
            raise _bad("initial_expiration", "must be an RFC 3339 date-time or null")
    if cfg["tls_verify"] not in (True, False):
        raise _bad("tls_verify", "must be true or false")
    if cfg["reprovision"] not in (True, False):
        raise _bad("reprovision", "must be true or false")
    d = cfg["device_id"]
    if d is not None and not (isinstance(d, str) and 3 < len(d) < 91 and all(
            c.isalpha() and c < "{" or "/" < c < ":" or c in "-_." for c in d)):
        raise _bad("device_id", "must be 4 to 90 characters of 0-9 a-z A-Z - _ .")
    if cfg["ca_file"] is not None and not isinstance(cfg["ca_file"], str):
        raise _bad("ca_file", "must be a file name")
    if https and cfg["tls_verify"] and not cfg["ca_file"]:
        raise _bad("ca_file", "is required for an https api_url (or set tls_verify to false)")
    w = cfg["wifi"]
    if w is not None and not (isinstance(w, dict) and isinstance(w.get("ssid"), str)
                              and isinstance(w.get("password", ""), str)):
        raise _bad("wifi", 'must be {"ssid": "...", "password": "..."}')
    _number(cfg, "timeout_s", 1, 300)
    _number(cfg, "backoff_min_s", 1, 86400)
    _number(cfg, "backoff_max_s", cfg["backoff_min_s"], 7 * 86400)
    if cfg["transport"] not in ("wire", "urequests") or \
            (cfg["transport"] == "urequests" and https):
        raise _bad("transport", 'must be "wire", or "urequests" for an http:// api_url only')
    if cfg["sleep"] not in ("none", "light", "deep"):
        raise _bad("sleep", 'must be "none", "light" or "deep"')
    if cfg["led"] is not None and not isinstance(cfg["led"], dict):
        raise _bad("led", 'must be an object like {"pin": 2, "active_high": true}')
    if not isinstance(cfg["store_dir"], str):
        raise _bad("store_dir", "must be a directory name")
    return cfg


def load(path="config.json"):
    try:
        with open(path) as f:
            raw = f.read()
    except OSError:
        raise ConfigError("%s: missing or unreadable" % path)
    try:
        raw = json.loads(raw)
    except ValueError:
        raise ConfigError("%s: not valid JSON" % path)
    return validate(raw)
