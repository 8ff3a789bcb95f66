# The naive token refresher most people write today: the baseline `make bench` measures the
# firmware against. A MicroPython script, run as a board's main.py beside a config.json
# (same keys as the firmware: api_url, initial_token, timeout_s, provisioning_token).
#
# Deliberately naive, like the scripts it stands for: the token lives in token.json,
# overwritten in place (a power cut mid-write loses it); the answer is trusted as it comes
# (no validation, redirects followed, no TLS verification); a failure sleeps a fixed 10 s.
# One rotation is `refresh(cfg, doc)`, so tools/bench/probes/heap.py can time one cycle of it.
import json
import time

try:
    import requests
except ImportError:
    import urequests as requests  # type: ignore[import-not-found, no-redef]  # older ports

PATH = "/devices/registration-tokens/refresh"
TOKEN_FILE = "token.json"


def log(msg):
    print("[naive] " + msg)


def short(token):
    return "%s...(%d)" % (token[:6], len(token))


def load_config():
    with open("config.json") as f:
        return json.load(f)


def load_token(cfg):
    try:
        with open(TOKEN_FILE) as f:
            return json.load(f)
    except OSError:
        return {"registrationToken": cfg["initial_token"], "expirationTime": None}


def save_token(doc, path=TOKEN_FILE):
    with open(path, "w") as f:
        json.dump(doc, f)


def put_token(cfg, token):
    headers = {}
    if cfg.get("provisioning_token"):
        headers["Authorization"] = "DeviceToken " + cfg["provisioning_token"]
    r = requests.put(cfg["api_url"] + PATH, json={"registrationToken": token},
                     headers=headers, timeout=cfg.get("timeout_s", 15))
    status, doc = r.status_code, r.json()
    r.close()
    return status, doc


def seconds_left(doc):
    # "2026-11-25T22:46:20.316Z" -> seconds from now; ignores the offset and the epoch
    exp = doc.get("expirationTime")
    if not exp:
        return 7200
    t = [int(exp[i:i + n]) for i, n in ((0, 4), (5, 2), (8, 2), (11, 2), (14, 2), (17, 2))]
    return time.mktime((t[0], t[1], t[2], t[3], t[4], t[5], 0, 0)) - time.time()


def refresh(cfg, doc):
    """One rotation: send the token, store what comes back. Returns the new token doc."""
    status, new = put_token(cfg, doc["registrationToken"])
    save_token(new)
    log("rotated (%d): saved %s, expires %s" % (
        status, short(new["registrationToken"]), new.get("expirationTime")))
    return new


def main():
    cfg = load_config()
    doc = load_token(cfg)
    while True:
        try:
            doc = refresh(cfg, doc)
            wait = seconds_left(doc) / 2
        except Exception as e:
            log("error: %r" % e)
            wait = 10
        time.sleep(max(wait, 1))


if __name__ == "__main__":
    main()
