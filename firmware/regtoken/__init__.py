# regtoken: keeps a device's registration token alive. README "Using it from your app".
from .edges import redact
from .error import ConfigError

__version__ = "0.1.0"
__all__ = ("Refresher", "ConfigError", "Clock", "load", "validate", "redact", "HEALTHY",
           "BACKOFF", "FORBIDDEN", "PROVISION", "PROVISIONING")


def __getattr__(name):
    # Refresher, Clock and the states are loaded on first use, so that load() checks the
    # config before the refresher's code is on the heap: a lower peak at boot.
    if "A" <= name[:1] <= "Z":
        from . import refresher

        return getattr(refresher, name)
    # a submodule not loaded yet: MicroPython's `from . import x` asks here first. Only a
    # name that can be one: dir() and the REPL's tab completion ask here for every name
    # the interpreter knows, and "." or "/" or "__init__" imported this package anew
    if name.isalpha() and name.islower():
        try:
            return __import__(__name__ + "." + name, None, None, (name,))
        except ImportError:
            pass
    raise AttributeError(name)


def validate(raw, name="config"):
    """A config dict, checked, with defaults filled in; raises ConfigError."""
    return _config().validate(raw, name)


def load(path="config.json"):
    """config.json, checked, with defaults filled in; raises ConfigError."""
    return _config().load(path)


def open(config="config.json", **edges):  # noqa: A001  (not in __all__: no shadowing)
    """A Refresher from a config dict or the path of a config.json. `edges` (transport,
    store, clock, rand, log) replace the defaults, e.g. in tests."""
    cfg = (validate if isinstance(config, dict) else load)(config)
    from .refresher import Refresher

    return Refresher(cfg, **edges)


def _config():
    # The validator runs once at boot: imported, then let go, so that its code does not
    # stay on the heap for the years the device runs.
    import sys

    from . import config

    sys.modules.pop(config.__name__)
    del globals()["config"]
    return config
