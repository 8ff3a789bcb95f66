# config.json: validate and fill defaults. A bad value stops the device with one message
# naming the key; nothing here touches the token store. Imported once at boot, then let go.
#
# Size: one walk over the keys, one raise. The .mpy keeps each string of 10 characters or
# more as an object, and the strings in a constant tuple apart, so a key is named once.
from . import wire  # the URL the config accepts is the one wire takes
from .error import ConfigError
from .policy import rfc3339, valid_token

DEFAULTS: dict = {"api_url": None, "initial_token": None, "provisioning_token": None,
                  "ca_file": None, "tls_verify": True, "wifi": None, "timeout_s": 15,
                  "backoff_min_s": 5, "backoff_max_s": 240, "store_dir": "", "transport": "wire",
                  "sleep": "none", "led": None, "reprovision": False, "device_id": None}


def validate(raw, name="config"):
    """A checked copy of the config dict with defaults filled in; raises ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError(name + ": not a JSON object")
    cfg: dict = dict(DEFAULTS)
    cfg.update(raw)
    url = cfg["api_url"]
    try:
        https, host, port, _, hp = wire.split_url(url)
        # printable ASCII, no space (a CR LF would write headers of its own), and the port
        # as digits alone (int() takes "+9" and "1_0")
        host = host and 0 < port < 65536 and url.split("://")[0] in ("http", "https") \
            and valid_token(url) and (":" not in hp or hp.endswith((":%d" % port, "]"))) \
            and not ("?" in url or "#" in url)  # the call's path is appended to it
    except Exception:
        host = https = 0
    if not https:
        wire._room = None  # no TLS context will need it
    # z to a: backoff_min_s is checked before backoff_max_s, tls_verify before ca_file.
    # `why` stays None for a good value; a message is built only for a bad one.
    for k in sorted(cfg, reverse=True):
        v = cfg[k]
        d = DEFAULTS.get(k)
        t: type = type(d)
        why = None
        if k == "api_url":
            if not host:
                why = "an http(s):// URL (a port, if any, from 1 to 65535; no ? or #)"
        elif k == "initial_expiration":
            try:
                cfg[k] = rfc3339(v)
            except ValueError:
                why = "RFC 3339 or null"
        elif k not in DEFAULTS:
            if not k.startswith("_"):  # a comment
                why = "a known key"
        elif k.endswith("_token"):
            if not (v is None or valid_token(v)):
                why = "1-1024 printable ASCII, no spaces"
        elif t is str and d:  # transport, sleep: one of the choices, first the default
            c = ("wire", "urequests") if d == "wire" else ("none", "light", "deep")
            if v not in c:
                why = '"%s"' % '" or "'.join(c)
            elif v == "urequests" and host and (https or "[" in url):
                why = "wire for https or IPv6"
        elif t is int:  # a number (a bool is none) in its range
            lo = 1
            hi = 300 if k == "timeout_s" else 86400
            if k == "backoff_max_s":
                lo, hi = cfg["backoff_min_s"], 604800
            if not (type(v) in (int, float) and lo <= v <= hi):
                why = "a number from %s to %s" % (lo, hi)
        elif k == "device_id":
            from re import match  # after valid_token: no newline, which $ lets by in CPython

            if not (v is None or valid_token(v) and 3 < len(v) < 91
                    and match("[0-9A-Za-z_.-]+$", v)):
                why = "4-90 chars of 0-9 a-z A-Z - _ ."
        else:  # of the default's type; None too when that is the default
            t = str if k == "ca_file" else dict if d is None else t  # led, wifi: objects
            if not (isinstance(v, t) or v is None is d):
                why = "true or false" if t is bool else "a string" if t is str else "an object"
            elif k == "ca_file" and https and cfg["tls_verify"] and not v:
                why = "set for https or tls_verify false"
            elif k == "wifi" and v and not (isinstance(cfg[k].get("ssid"), str)  # cfg[k]: mypy
                                            and cfg[k]["ssid"]
                                            and isinstance(cfg[k].get("password", ""), str)):
                why = '{"ssid": "...", "password": "..."}'
            elif k == "led" and v is not None and not (type(cfg[k].get("pin")) in (int, str)
                                                       and all((x, type(y)) in (
                    ("pin", int), ("pin", str), ("active_high", bool), ("rgb", bool),
                    ("timer", int)) for x, y in cfg[k].items())):
                # else a typo boots again for ever on a board (KeyError: pin)
                why = '{"pin": 2 or "LED", "active_high": true, "timer": 0, "rgb": false}'
        if why:
            raise ConfigError("%s: '%s' must be %s" % (name, k, why))
    for k in "backoff_min_s", "backoff_max_s":  # whole seconds, rounded up (a wait never
        v = cfg[k]  # shorter than set; max >= min still): added to a time, a float is a
        cfg[k] = int(v) + (v > int(v))  # 32-bit port's single float, ~1.8e9 in steps of
        # 128 s (a 403 hold of 240 s was 199)
    cfg["api_url"] = url.rstrip("/")
    cfg["_from"] = name
    return cfg


def load(path):
    """config.json, checked, with defaults filled in; raises ConfigError."""
    import json

    try:
        with open(path, "rb") as f:  # bytes: bad UTF-8 is bad JSON, not a traceback
            # its length first: read(4097) would take 4 KB in one piece at boot, and a
            # bigger file's objects would take the heap
            if f.seek(0, 2) > 4096:  # or a directory (the unix port opens one): its
                f.seek(0)  # length means nothing, its read is an OSError
                f.read(1)
                raise ConfigError(path + ": over 4096 bytes")
            f.seek(0)
            s = f.read()
    except OSError:
        raise ConfigError(path + ": missing or unreadable")
    try:
        raw = json.loads(s)
    except Exception:  # ValueError; MemoryError or RecursionError: nested too deep
        raise ConfigError(path + ": not valid JSON" + (
            " (it starts with a BOM)" if s[:3] == b"\xef\xbb\xbf" else ""))
    return validate(raw, path)
