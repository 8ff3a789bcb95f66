# config.json: validate and fill defaults. A bad value stops the device with one message
# naming the key; nothing here touches the token store. Imported once at boot, then let go.
from .answer import valid_token
from .dates import rfc3339
from .error import ConfigError

DEFAULTS = {"initial_token": None, "provisioning_token": None, "ca_file": None,
            "tls_verify": True, "wifi": None, "timeout_s": 15, "backoff_min_s": 5,
            "backoff_max_s": 240, "store_dir": "", "transport": "wire", "sleep": "none",
            "led": None, "reprovision": False, "device_id": None}
# key: the values allowed (a tuple), or the type (None allowed unless the default is set)
RULES: dict = {"tls_verify": (True, False), "reprovision": (True, False),
               "transport": ("wire", "urequests"),
               "sleep": ("none", "light", "deep"), "ca_file": str, "store_dir": str,
               "led": dict, "wifi": dict}


def validate(raw, name="config"):
    """A checked copy of the config dict with defaults filled in; raises ConfigError."""

    def bad(key, why):
        return ConfigError("%s: '%s' %s" % (name, key, why))

    if not isinstance(raw, dict):
        raise ConfigError(name + ": must be a JSON object")
    cfg: dict = dict(DEFAULTS)
    cfg["_from"] = name
    for k in raw:
        if k not in DEFAULTS and k not in ("api_url", "initial_expiration") and k[:1] != "_":
            raise bad(k, "is not a known key")
        cfg[k] = raw[k]
    url = cfg.get("api_url", "")
    from .wire import split_url  # outside the try: a MemoryError is no bad URL

    try:
        https, host = split_url(url)[:2]
        ok = url.split("://")[0] in ("http", "https") and host and " " not in url
    except Exception:
        ok = 0
    if not ok:
        raise bad("api_url", "must be an http:// or https:// URL")
    cfg["api_url"] = url.rstrip("/")
    for k in ("initial_token", "provisioning_token"):
        if cfg[k] is not None and not valid_token(cfg[k]):
            raise bad(k, "must be 1-1024 printable ASCII characters, no spaces")
    if "initial_expiration" in raw:
        try:
            cfg["initial_expiration"] = rfc3339(raw["initial_expiration"])
        except ValueError:
            raise bad("initial_expiration", "must be an RFC 3339 date-time or null")
    for k, rule in RULES.items():
        v = cfg[k]
        if type(rule) is tuple:
            if v not in rule or type(v) is not type(rule[0]):  # JSON 1 is no true
                w = ['"%s"' % c if isinstance(c, str) else str(c).lower() for c in rule]
                raise bad(k, "must be %s or %s" % (", ".join(w[:-1]), w[-1]))
        elif (v is not None or DEFAULTS[k] is not None) and not isinstance(v, rule):
            raise bad(k, "must be " + ("a string" if rule is str else "a JSON object"))
    d = cfg["device_id"]
    if d is not None and not (isinstance(d, str) and 3 < len(d) < 91 and all(
            c.isalpha() and c < "{" or "/" < c < ":" or c in "-_." for c in d)):
        raise bad("device_id", "must be 4 to 90 characters of 0-9 a-z A-Z - _ .")
    if https and cfg["tls_verify"] and not cfg["ca_file"]:
        raise bad("ca_file", "is required for an https api_url (or set tls_verify to false)")
    w = cfg["wifi"]
    if w and not (isinstance(w.get("ssid"), str) and isinstance(w.get("password", ""), str)):
        raise bad("wifi", 'must be {"ssid": "...", "password": "..."}')
    for k, lo, hi in (("timeout_s", 1, 300), ("backoff_min_s", 1, 86400),
                      ("backoff_max_s", cfg["backoff_min_s"], 604800)):
        v = cfg[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            raise bad(k, "must be a number from %s to %s" % (lo, hi))
    if cfg["transport"] == "urequests" and (https or "[" in url):
        raise bad("transport", '"urequests" takes an http:// URL without IPv6 literal')
    return cfg


def load(path):
    """config.json, checked, with defaults filled in; raises ConfigError."""
    import json

    try:
        with open(path) as f:
            raw = json.load(f)
    except OSError:
        raise ConfigError(path + ": missing or unreadable")
    except ValueError:
        raise ConfigError(path + ": not valid JSON")
    return validate(raw, path)
