# regtoken: keeps a device's registration token alive. See README "Using it from your app".
from .clock import Clock
from .config import ConfigError, load, validate
from .log import redact
from .refresher import BACKOFF, FORBIDDEN, HEALTHY, PROVISION, Refresher

__version__ = "0.1.0"


def open(config: dict | str = "config.json", **edges) -> Refresher:
    """A Refresher from a config dict or the path of a config.json. `edges` (transport,
    store, clock, rand, log) replace the defaults, e.g. in tests."""
    cfg = validate(config) if isinstance(config, dict) else load(config)
    return Refresher(cfg, **edges)


__all__ = ["Refresher", "ConfigError", "Clock", "open", "load", "validate", "redact",
           "HEALTHY", "BACKOFF", "FORBIDDEN", "PROVISION"]
