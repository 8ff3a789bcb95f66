# regtoken: keeps a device's registration token alive. README "Using it from your app".
from .clock import Clock
from .error import ConfigError
from .log import redact
from .refresher import BACKOFF, FORBIDDEN, HEALTHY, PROVISION, PROVISIONING, Refresher

_open = open  # the built-in, before regtoken.open below hides it
__version__ = "0.1.0"
__all__ = ("Refresher", "ConfigError", "Clock", "load", "validate", "redact", "HEALTHY",
           "BACKOFF", "FORBIDDEN", "PROVISION", "PROVISIONING")


def validate(raw, name="config"):
    """A config dict, checked, with defaults filled in; raises ConfigError."""
    # The validator runs once at boot: import it, then let it go, so that its code does
    # not stay on the heap for the years the device runs.
    import sys

    from . import config

    sys.modules.pop(config.__name__)
    del globals()["config"]
    return config.validate(raw, name)


def load(path="config.json"):
    """config.json, checked, with defaults filled in; raises ConfigError."""
    import json

    try:
        with _open(path) as f:
            raw = json.load(f)
    except OSError:
        raise ConfigError(path + ": missing or unreadable")
    except ValueError:
        raise ConfigError(path + ": not valid JSON")
    return validate(raw, path)


def open(config="config.json", **edges):  # noqa: A001  (not in __all__: no shadowing)
    """A Refresher from a config dict or the path of a config.json. `edges` (transport,
    store, clock, rand, log) replace the defaults, e.g. in tests."""
    return Refresher(validate(config) if isinstance(config, dict) else load(config), **edges)
