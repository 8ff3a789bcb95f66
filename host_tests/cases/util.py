# Tiny helpers so that the same test modules run under pytest and under micropython.


def raises(exc, fn, *args, **kw):
    """The exception fn raised, which must be an `exc`."""
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise AssertionError("%s not raised" % exc.__name__)


def tok(n, size=248):
    """A realistic base64-alphabet token, distinct for each n."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    out = []
    x = n * 7919 + 17
    for _ in range(size):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(alphabet[x % 64])
    return "".join(out)


def swap_module(name, module):
    """Put `module` (a fake) in sys.modules under `name`, so that the firmware's `import
    name` finds it; returns what restore_module puts back."""
    import sys

    saved = sys.modules.get(name)
    sys.modules[name] = module
    return saved


def restore_module(name, saved):
    """Undo swap_module: the module that was there, or none."""
    import sys

    if saved is None:
        del sys.modules[name]
    else:
        sys.modules[name] = saved
