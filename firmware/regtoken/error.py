class ConfigError(Exception):
    """The config is missing, malformed, or has a bad value; the message names the key."""
