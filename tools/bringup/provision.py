#!/usr/bin/env python3
"""Provision a board: write config.json (and copy the CA file) onto it.

    python -m bringup.provision --board esp32 --port /dev/ttyUSB0 \\
        [--from provision.json] [--token-file token.json] [--force] [--dry-run]

Values, later ones winning:
  1. --from FILE: a JSON object with config.json's keys; its "ca_file" is a local path
     (relative to FILE), and "wifi" is {"ssid": ..., "password": ...};
  2. --token-file FILE: a token object {"registrationToken": ..., "expirationTime": ...}
     as `PYTHONPATH=tools python -m refserver mint --out FILE` prints it: initial_token
     and initial_expiration;
  3. environment variables (make passes its command-line variables this way, so secrets
     stay off the command line): API_URL, INITIAL_TOKEN, INITIAL_EXPIRATION,
     PROVISIONING_TOKEN, CA_FILE, TLS_VERIFY, WIFI_SSID, WIFI_PASSWORD, TIMEOUT_S,
     BACKOFF_MIN_S, BACKOFF_MAX_S, SLEEP, REPROVISION, DEVICE_ID.

Every value is checked before the board is touched, by the firmware's own validator
(firmware/regtoken/config.py runs under CPython too) and, on top, by what only the host can
check (the CA file exists and is a certificate, the board needs Wi-Fi, values from the
environment are strings, a real calendar date) or explain better (where a token goes
wrong, where a value comes from). A board that already holds a valid
token (the store has one, and the server has not refused it with a 410) is refused unless --force:
overwriting config.json there would import the new initial token only if the store were
empty, so a forgotten FORCE is the safe failure. Secrets (tokens, the Wi-Fi password) are
never printed beyond their first 6 characters and their length.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bringup.boardctl import RemoteBoard, RemoteError, secret
from bringup.boards import ROOT, Board, BoardError, load
from bringup.deploy import remote_hashes

MAX_CA_BYTES = 16 * 1024  # a board parses it in RAM
NUMBERS = ("timeout_s", "backoff_min_s", "backoff_max_s")
FILE_KEYS = ("api_url", "initial_token", "initial_expiration", "provisioning_token", "ca_file",
             "tls_verify", "wifi", "timeout_s", "backoff_min_s", "backoff_max_s", "sleep",
             "reprovision", "device_id")
ENV_KEYS = {"API_URL": "api_url", "INITIAL_TOKEN": "initial_token",
            "INITIAL_EXPIRATION": "initial_expiration", "PROVISIONING_TOKEN": "provisioning_token",
            "CA_FILE": "ca_file", "TLS_VERIFY": "tls_verify", "TIMEOUT_S": "timeout_s",
            "BACKOFF_MIN_S": "backoff_min_s", "BACKOFF_MAX_S": "backoff_max_s", "SLEEP": "sleep",
            "REPROVISION": "reprovision", "DEVICE_ID": "device_id"}
SAFE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
# What the host adds to the firmware's message about a key: where the value comes from.
HINTS = {
    "ca_file": "CA_FILE=<the server's CA, PEM or DER>, or TLS_VERIFY=false to skip "
               "verification (not for production)",
    "backoff_max_s": "it caps the growing retry delay: not smaller than backoff_min_s",
}


class ProvisionError(Exception):
    """A bad value; the message names the key and never contains a secret."""


def gather(from_file: str | None, token_file: str | None,
           env: dict[str, str]) -> dict[str, Any]:
    """Raw values from the three sources, later ones overriding earlier ones."""
    raw: dict[str, Any] = {}
    if from_file:
        doc = _read_json(from_file, "--from/PROVISION")
        if not isinstance(doc, dict):
            raise ProvisionError("%s: must be a JSON object" % from_file)
        unknown = sorted(set(doc) - set(FILE_KEYS))
        if unknown:
            raise ProvisionError("%s: unknown key(s) %s; known: %s"
                                 % (from_file, ", ".join(unknown), ", ".join(FILE_KEYS)))
        raw.update(doc)
        if isinstance(raw.get("ca_file"), str):  # relative to the file that names it
            raw["ca_file"] = str(Path(from_file).parent / raw["ca_file"])
    if token_file:
        raw.update(_token_object(token_file))
    for var, key in ENV_KEYS.items():
        if env.get(var, "") != "":
            raw[key] = env[var]
    if env.get("WIFI_SSID") or env.get("WIFI_PASSWORD"):
        wifi = dict(raw.get("wifi") or {})
        wifi.update({k: env[v] for k, v in (("ssid", "WIFI_SSID"), ("password", "WIFI_PASSWORD"))
                     if v in env})
        raw["wifi"] = wifi
    return raw


def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except OSError as e:
        raise ProvisionError("%s %s: cannot read: %s" % (what, path, e.strerror)) from None
    except ValueError:
        raise ProvisionError("%s %s: not valid JSON" % (what, path)) from None


def _token_object(path: str) -> dict[str, Any]:
    doc = _read_json(path, "TOKEN_FILE")
    if not isinstance(doc, dict) or "registrationToken" not in doc:
        raise ProvisionError('TOKEN_FILE %s: must be a token object {"registrationToken": ..., '
                             '"expirationTime": ...}' % path)
    out = {"initial_token": doc["registrationToken"]}
    if "expirationTime" in doc:  # null: never expires; no key: unknown, rotated at once
        out["initial_expiration"] = doc["expirationTime"]
    return out


def validate(raw: dict[str, Any], board: Board) -> tuple[dict[str, Any], Path | None]:
    """(config.json content, local CA file or None); ProvisionError names the bad key."""
    cfg: dict[str, Any] = {"api_url": _url(raw.get("api_url"))}
    for key in ("initial_token", "provisioning_token"):
        if raw.get(key) is not None:
            cfg[key] = raw[key]
    if "initial_expiration" in raw:
        if "initial_token" not in cfg:
            raise ProvisionError("initial_expiration: given without an initial_token")
        cfg["initial_expiration"] = _expiration(raw["initial_expiration"])
    verify = _bool("tls_verify", raw.get("tls_verify", True))
    ca = _ca_file(raw.get("ca_file"))
    if ca is not None:
        cfg["ca_file"] = ca.name
    cfg["tls_verify"] = verify
    wifi = _wifi(raw.get("wifi"), board)
    if wifi is not None:
        cfg["wifi"] = wifi
    for key in NUMBERS:
        if raw.get(key) is not None:
            cfg[key] = _number(key, raw[key])
    if raw.get("sleep") is not None:
        cfg["sleep"] = raw["sleep"]
    if raw.get("reprovision") is not None:
        cfg["reprovision"] = _bool("reprovision", raw["reprovision"])
        if cfg["reprovision"] and "provisioning_token" not in cfg:
            raise ProvisionError("reprovision: needs a provisioning_token (PROVISIONING_TOKEN=...)")
    if raw.get("device_id") is not None:
        cfg["device_id"] = raw["device_id"]  # the firmware's validator judges it
    if board.led is not None:
        cfg["led"] = board.led
    _as_the_device_would(cfg)
    return cfg, ca


def _firmware() -> Any:
    """The firmware's regtoken package, imported from firmware/ (it runs under CPython)."""
    path = str(ROOT / "firmware")
    if path not in sys.path:
        sys.path.insert(0, path)
    import regtoken
    import regtoken.policy

    return regtoken


def _as_the_device_would(cfg: dict[str, Any]) -> None:
    """The device's own validator on config.json as the board will read it. Its message
    names the key; ProvisionError says it the host's way ("key: why"), with what the host
    knows better: where in a token it goes wrong, where a value comes from."""
    regtoken = _firmware()
    try:
        regtoken.validate(json.loads(json.dumps(cfg)))
    except regtoken.ConfigError as e:
        message = str(e)
        named = re.search(r"'(\w+)'", message)  # "config.json: 'timeout_s' must be ..."
        if named is None:
            raise ProvisionError(message) from None
        key = named[1]
        why = message[named.end():].lstrip(": ")
        if key in ("initial_token", "provisioning_token"):
            why = "%s; %s" % (_what_is_wrong_with_token(cfg.get(key)), why)
        hint = HINTS.get(key)
        raise ProvisionError("%s: %s%s" % (key, why, "; " + hint if hint else "")) from None


def _url(url: Any) -> str:
    if not isinstance(url, str) or not url:
        raise ProvisionError("api_url: missing (API_URL=https://host[:port])")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        raise ProvisionError("api_url: %r has a bad host or port" % url) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or \
            any(c.isspace() for c in url) or parts.query or parts.fragment:
        raise ProvisionError("api_url: %r is not an http:// or https:// URL with a host "
                             "(and no query)" % url)
    return url.rstrip("/")


def _what_is_wrong_with_token(value: Any) -> str:
    """Why the firmware refused a token (policy.valid_token), without showing it."""
    limit = _firmware().policy.MAX_TOKEN
    if not isinstance(value, str) or not value:
        return "empty, or not a string"
    if len(value) > limit:
        return "%d characters, at most %d" % (len(value), limit)
    for i, c in enumerate(value):
        if not "!" <= c <= "~":  # the value itself is a secret: say where, not what
            return "character %d is not printable ASCII (or is a space)" % (i + 1)
    return "refused"


def _expiration(value: Any) -> str | None:
    if value is None:
        return None  # the token never expires
    if isinstance(value, str):
        value = re.sub(r"(\.\d{6})\d+", r"\1", value)  # fromisoformat (3.10): 6 digits at most
    try:
        _firmware().policy.rfc3339(value)  # the parser the device reads it with
    except ValueError:
        raise ProvisionError("initial_expiration: %r is not an RFC 3339 date-time "
                             "(2024-11-28T14:03:07.316Z) or null" % (value,)) from None
    try:  # what the device's parser lets by (a leap second's :60) is not written to a board
        datetime.datetime.fromisoformat(value.upper().replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        raise ProvisionError("initial_expiration: %r is not a real date-time" % value) from None
    return value


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ProvisionError("%s: %r is not true or false" % (key, value))


def _number(key: str, value: Any) -> Any:
    """A number from the environment's string; the firmware judges its range."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ProvisionError("%s: %r is not a number" % (key, value)) from None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _ca_file(path: Any) -> Path | None:
    if path in (None, ""):
        return None
    ca = Path(str(path))
    if not ca.is_file():
        raise ProvisionError("ca_file: %s does not exist" % ca)
    if not SAFE_NAME.fullmatch(ca.name):
        raise ProvisionError("ca_file: %r: the name on the board must be letters, digits, "
                             "'.', '_' or '-'" % ca.name)
    data = ca.read_bytes()
    if not data or len(data) > MAX_CA_BYTES:
        raise ProvisionError("ca_file: %s has %d bytes; expected 1 to %d"
                             % (ca, len(data), MAX_CA_BYTES))
    if b"-----BEGIN CERTIFICATE-----" not in data and data[:1] != b"\x30":
        raise ProvisionError("ca_file: %s is neither a PEM certificate nor DER" % ca)
    return ca


def _wifi(wifi: Any, board: Board) -> dict[str, str] | None:
    if wifi is None:
        if board.wifi:
            raise ProvisionError("wifi: board %s needs Wi-Fi: WIFI_SSID=... WIFI_PASSWORD=..."
                                 % board.name)
        return None
    if not isinstance(wifi, dict) or set(wifi) - {"ssid", "password"}:
        raise ProvisionError('wifi: must be {"ssid": "...", "password": "..."}')
    ssid, password = wifi.get("ssid"), wifi.get("password", "")
    if not isinstance(ssid, str) or not 1 <= len(ssid.encode()) <= 32:
        raise ProvisionError("wifi: ssid must be 1 to 32 bytes")
    if not isinstance(password, str):
        raise ProvisionError("wifi: password must be a string")
    hexkey = len(password) == 64 and all(c in "0123456789abcdefABCDEF" for c in password)
    if password and not hexkey and not (8 <= len(password) <= 63 and password.isprintable()):
        raise ProvisionError("wifi: password must be empty (open network), 8 to 63 printable "
                             "characters (WPA2 passphrase) or 64 hex digits (%d given)"
                             % len(password))
    return {"ssid": ssid, "password": password}


def describe(cfg: dict[str, Any], ca: Path | None) -> list[str]:
    """The config as it may be shown: secrets cut to 6 characters + length."""
    lines = []
    for key, value in cfg.items():
        if key in ("initial_token", "provisioning_token"):
            value = secret(value)
        elif key == "wifi":
            value = "ssid %r, password %s" % (value["ssid"], "(%d chars)" % len(value["password"])
                                              if value["password"] else "(open network)")
        elif key == "ca_file" and ca is not None:
            value = "%s (from %s, %d bytes)" % (value, ca, ca.stat().st_size)
        else:
            value = json.dumps(value)
        lines.append("  %-19s %s" % (key, value))
    if cfg["api_url"].startswith("https://") and not cfg["tls_verify"]:
        lines.append("  warning: tls_verify is false: the device will not check the server")
    return lines


def holds_valid_token(remote: RemoteBoard) -> bool:
    answer = remote.query("survey", load=True)["worth_keeping"]
    if isinstance(answer, list):  # regtoken not deployed: cannot decode the slots
        if answer:
            raise ProvisionError("the board has %s but no regtoken package to check them: "
                                 "run make deploy first, or FORCE=1" % ", ".join(answer))
        return False
    return bool(answer)


def provision(remote: RemoteBoard, cfg: dict[str, Any], ca: Path | None, force: bool) -> None:
    if holds_valid_token(remote):
        if not force:
            raise ProvisionError("board on %s already holds a valid token; FORCE=1 overwrites "
                                 "its config.json (the store keeps its token)" % remote.port)
        print("provision: board holds a valid token; overwriting config.json (FORCE)")
    data = (json.dumps(cfg, indent=1) + "\n").encode()
    with tempfile.TemporaryDirectory() as tmp:  # private: the file holds secrets
        local = Path(tmp) / "config.json"
        fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        files = {"config.json": local}
        if ca is not None:
            files[ca.name] = ca
        cmd: list[str] = []
        for name, path in files.items():
            cmd += ["fs", "cp", "-f", str(path), ":" + name, "+"]
        remote.run(*cmd[:-1])
        want = {name: _sha256(path) for name, path in files.items()}
    got = remote_hashes(remote, sorted(want))
    wrong = [n for n in want if got.get(n) != want[n]]
    if wrong:
        raise RemoteError("read-back differs after copying: %s" % ", ".join(wrong))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--board", default="unix")
    ap.add_argument("--port", default="", help="serial port or pty (default: the board's)")
    ap.add_argument("--from", dest="from_file", default=None, help="provision.json")
    ap.add_argument("--token-file", default=None, help="a token object (refserver mint --out)")
    ap.add_argument("--force", action="store_true", help="overwrite a board that holds a token")
    ap.add_argument("--dry-run", action="store_true", help="check and show; touch no board")
    args = ap.parse_args(argv)
    try:
        board = load(args.board)
        cfg, ca = validate(gather(args.from_file, args.token_file, dict(os.environ)), board)
        print("provision: config.json for board %s:" % board.name)
        print("\n".join(describe(cfg, ca)))
        if args.dry_run:
            print("provision: dry run, no board touched")
            return 0
        remote = RemoteBoard.open(board, args.port)
        provision(remote, cfg, ca, args.force)
        print("provision: wrote config.json%s on %s%s" % (
            " and " + ca.name if ca else "", remote.port, remote.restart_hint()))
    except (BoardError, RemoteError, ProvisionError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
