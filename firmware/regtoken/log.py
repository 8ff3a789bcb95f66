# The default log: one line per event on stdout. A log is any callable taking one str.
# Tokens are never logged whole.


def redact(token):
    return "%.6s...(%d)" % (token, len(token)) if token else "<none>"  # %.6s: no slice


def log(msg):
    print("[regtoken]", msg)  # two pieces: no line built
