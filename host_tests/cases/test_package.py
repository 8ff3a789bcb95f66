# The package itself (firmware/regtoken/__init__.py): its lazy attributes. Apart from
# test_refresher.py: dir() loads every module (~50 KB), which the emulated Pico holds only
# on a heap that a big case module has not taken first.


def test_dir_of_the_package_never_imports_it_anew():
    # MicroPython's dir() and its REPL's tab completion ask a module's __getattr__ for
    # every name the interpreter knows: the package's imported "regtoken./",
    # "regtoken..", "regtoken.__init__" ..., each the package anew with its modules: 84 KB,
    # a MemoryError at 64 KiB. Only its own submodules may load (CPython's dir() asks none)
    import sys

    import regtoken

    before = set(sys.modules)
    attrs = set(regtoken.__dict__)
    try:
        dir(regtoken)
        for name in (".", "/", "..", "Wire."):
            try:
                getattr(regtoken, name)
                raise AssertionError("an attribute: " + name)
            except AttributeError:
                pass
        new = [m for m in sys.modules if m not in before]
        assert not [m for m in new if m[:9] == "regtoken." and not m[9:].isalpha()], new
    finally:  # what dir() loaded goes again: later cases count the package's modules
        for m in [m for m in sys.modules if m not in before]:
            sys.modules.pop(m)
        for a in [a for a in regtoken.__dict__ if a not in attrs]:
            delattr(regtoken, a)
