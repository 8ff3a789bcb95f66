# The default log: one line per event on stdout. A log is any callable taking one str.
# Tokens are never logged whole.


def redact(token):
    return "%s...(%d)" % (token[:6], len(token)) if token else "<none>"


def log(msg):
    print("[regtoken]", msg)  # two pieces: no line built
