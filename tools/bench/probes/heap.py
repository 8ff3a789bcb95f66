# MicroPython probe for `make bench` (tools/bench/ copies it into a board directory):
# the heap a program's code keeps, and the heap one token rotation allocates.
#
#   cd <board dir> && micropython heap.py firmware|baseline CYCLES [--rom=IMAGE] [--reserve]
#
# The board directory holds config.json (a live reference server), main.py and the regtoken
# package as .mpy (firmware), or naive_baseline.py (baseline). CYCLES 0 measures the
# imports only. --rom=IMAGE imports the package from that ROMFS image mounted at /rom, where
# the loader uses .mpy code in place as from a board's ROMFS partition (the image itself is
# allocated before anything is measured). --reserve first grows the qstr pool, so that no
# module is charged for a new pool table (they double in size, and whichever import needs
# the next one would get all of it). An edge the program no longer has (a function renamed
# or gone) stops the probe with an error naming it: the report's labels name them too.
# Prints RESULT lines of JSON:
#   {"what": "imports", "modules": {module still loaded: bytes it keeps on the heap},
#    "released": {module imported at boot and let go (regtoken.config, .boot): bytes it
#    held while loaded}}   (the heap the code keeps in all: probes/kept.py)
#   {"what": "cycle", "alloc": [bytes allocated by each measured rotation, gc disabled],
#    "kept": [bytes each rotation left live after gc.collect()],
#    "parts": {edge: bytes allocated inside it during one rotation}, "rotations": n}
import builtins
import gc
import json
import sys


def scrub(depth=40):
    # The collector scans the C stack conservatively: stale pointers left there by a
    # finished deep call (e.g. the compiler's) would keep garbage alive. Deep calls
    # overwrite them.
    return scrub(depth - 1) if depth else 0


def live():
    scrub()
    gc.collect()
    return gc.mem_alloc()


def result(doc):
    print("RESULT " + json.dumps(doc))


class ImportCosts:
    """An __import__ hook: the heap each newly loaded module keeps (its bytecode, qstrs,
    functions, classes and globals), its own imports not included."""

    def __init__(self):
        self.modules = {}
        self.stack = []  # per active import: [heap kept by nested imports, their modules]
        self.real = builtins.__import__

    def __call__(self, name, *args):
        before = list(sys.modules)
        self.stack.append([0, []])
        start = live()
        try:
            return self.real(name, *args)
        finally:
            new = [m for m in sys.modules if m not in before]
            for m in new:
                # wire's _spare and _room: the buffer its first client takes and the room
                # for a TLS context, reserved at import while the heap is emptiest. They
                # are the client's, not the module's code: dropped here, so the client
                # allocates its own
                for k in ("_spare", "_room"):
                    if getattr(sys.modules[m], k, None):
                        setattr(sys.modules[m], k, None)
            kept = live() - start
            nested, inner = self.stack.pop()
            for m in new:
                if m not in inner:
                    self.modules[m] = kept - nested
            if self.stack:
                self.stack[-1][0] += kept
                self.stack[-1][1].extend(new)


def firmware():
    """What main.py imports, the Refresher it builds, and one forced rotation."""
    import main  # noqa: F401  (main.py: its own imports, not its loop)
    import regtoken

    r = regtoken.open("config.json")

    def cycle():
        r._rec.at = 0  # force() waits backoff_min_s after a commit: rotations back to back
        r.force()
        r.step()

    machine = sys.modules["regtoken.machine"]
    edges = ((r._http, "request"), (machine, "classify"), (r._store, "commit"), (r, "_log"))
    return cycle, edges, lambda: r.status()["counts"]["rotations"]


def baseline():
    import naive_baseline as nb

    cfg = nb.load_config()
    doc = [nb.load_token(cfg)]
    done = [0]

    def cycle():
        doc[0] = nb.refresh(cfg, doc[0])
        done[0] += 1

    edges = ((nb, "put_token"), (nb.requests, "put"), (nb.requests.Response, "json"),
             (nb, "save_token"), (nb, "log"))
    return cycle, edges, lambda: done[0]


def measure(cycle):
    """(bytes allocated, bytes still live after a collection) for one call of cycle."""
    before = live()
    gc.disable()
    start = gc.mem_alloc()
    cycle()
    alloc = gc.mem_alloc() - start
    gc.enable()
    return alloc, live() - before


def check_edges(edges):
    """Every edge the probe wraps must exist: measuring what is there and leaving the rest
    out would let the report go on naming code that is gone."""
    missing = ["%s.%s" % (getattr(obj, "__name__", type(obj).__name__), name)
               for obj, name in edges if not hasattr(obj, name)]
    if missing:
        raise AttributeError("heap probe: no %s (update the probe's edges and the "
                             "report's labels)" % ", ".join(missing))


def tally(obj, name, parts):
    """Wrap obj.name so that the bytes allocated inside it add up in parts[name]."""
    inner = getattr(obj, name)
    parts[name] = 0

    def counted(*args, **kw):
        start = gc.mem_alloc()
        try:
            return inner(*args, **kw)
        finally:
            parts[name] += gc.mem_alloc() - start

    setattr(obj, name, counted)


def reserve_qstrs(entries=1024):
    """Intern dummy names until the qstr pool gets a table for ~entries more names."""
    i = 0
    gc.collect()
    gc.disable()
    while True:
        before = gc.mem_alloc()
        getattr(ImportCosts, "_q%d" % i, None)  # a missing attribute: the name is interned
        i += 1
        if gc.mem_alloc() - before >= entries * 8:
            break
    gc.enable()


def mount_rom(image):
    import vfs

    with open(image, "rb") as f:
        vfs.mount(vfs.VfsRom(f.read()), "/rom")  # type: ignore[abstract]  # the stub marks it abstract
    sys.path.insert(0, "/rom")


def main(who, cycles, options):
    if "--reserve" in options:
        reserve_qstrs()
    for opt in options:
        if opt.startswith("--rom="):
            mount_rom(opt[6:])
    costs = ImportCosts()
    builtins.__import__ = costs
    cycle, edges, rotations = firmware() if who == "firmware" else baseline()
    builtins.__import__ = costs.real
    check_edges(edges)
    mods = {m: b for m, b in costs.modules.items() if m in sys.modules}
    gone = {m: b for m, b in costs.modules.items() if m not in sys.modules}
    result({"what": "imports", "modules": mods, "released": gone})
    if not cycles:
        return
    for _ in range(2):  # warm-up: first-boot import, lazy imports, caches
        cycle()
    runs = [measure(cycle) for _ in range(cycles)]
    parts: dict = {}
    for obj, name in edges:
        tally(obj, name, parts)
    parts["total"] = measure(cycle)[0]
    result({"what": "cycle", "alloc": [a for a, _ in runs], "kept": [k for _, k in runs],
            "parts": parts, "rotations": rotations()})


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
