# regtoken: keeps a device's registration token alive. See README "Using it from your app".
import sys


class ConfigError(Exception):
    """config.json is missing, malformed, or has a bad value; the message names the key."""


from .clock import Clock  # noqa: E402  (ConfigError first: the modules below import it)
from .log import redact  # noqa: E402
from .refresher import BACKOFF, FORBIDDEN, HEALTHY, PROVISION, PROVISIONING, Refresher  # noqa: E402

__version__ = "0.1.0"
__all__ = ("Refresher", "ConfigError", "Clock", "open", "load", "validate", "redact",
           "HEALTHY", "BACKOFF", "FORBIDDEN", "PROVISION", "PROVISIONING")


def load(path: str = "config.json") -> dict:
    """config.json, checked, with defaults filled in; raises ConfigError."""
    return _config().load(path)


def validate(raw: dict) -> dict:
    """A config dict, checked, with defaults filled in; raises ConfigError."""
    return _config().validate(raw)


def _config():
    # The validator runs once at boot: import it, then let it go, so its code does not
    # stay on the heap for the years the device runs.
    from . import config

    sys.modules.pop(__name__ + ".config", None)
    globals().pop("config", None)
    return config


def open(config: dict | str = "config.json", **edges) -> Refresher:
    """A Refresher from a config dict or the path of a config.json. `edges` (transport,
    store, clock, rand, log) replace the defaults, e.g. in tests."""
    cfg = validate(config) if isinstance(config, dict) else load(config)
    return Refresher(cfg, **edges)
