# The config is missing, malformed, or has a bad value; the message names the key.
# Made by type(): no class body to store in the .mpy and run (13 bytes of .mpy, 32 of heap).
ConfigError: type[Exception] = type("ConfigError", (Exception,), {})
