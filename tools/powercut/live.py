# The whole firmware under power loss, on the MicroPython unix port. Copied as
# powercut_live.py into a unix board directory (tools/bringup/unixboard.py's layout, config.json
# with "store_dir": "/flash") and run there:
#
#   micropython powercut_live.py [K [TORN]]   the device loop; the power goes after write K
#   micropython powercut_live.py show         what the store on the image holds, and exit
#
# K (else $POWERCUT_AT, else 0 = never) counts the flash's write points (programs and
# erases, tools/powercut/blockdev.py) from this power-up; TORN (0 <= TORN < 1) lands
# only that fraction of the K-th write. The flash is a littlefs2 image with 4 KiB blocks
# in flash.img (formatted when missing), mounted at /flash. The device loop then runs
# exactly as firmware/main.py runs it (import main, main.main()), until SIGINT (exit 0,
# image saved) or the cut: the surviving bytes are saved to flash.img and the exit
# status is 99. Every load and commit of the token store is reported, commits with the
# write points and the programs and erases they took:
#
#   [powercut] load: gen 2 token abcdef...(248) sha256 <64 hex>
#   [powercut] commit gen 3: write points 24..28 (5), 4 programs, 1 erases; token ...
#   [powercut] power cut at write point 26, in the commit of gen 3; image saved
#
# A token is never printed whole: its first 6 characters, its length, its SHA-256.
# blockdev.py is imported from beside this file (copy it into the board directory too), else
# from the repository's tools/powercut.
import os
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
IMAGE = "flash.img"
BLOCK = 4096
BLOCKS = 32  # 128 KiB, like tools/powercut/images.py's lfs2-4096
MOUNT = "/flash"
CUT = 99  # exit status after a power cut

try:
    from blockdev import BlockDev, PowerCut  # type: ignore[import-not-found]
except ImportError:
    sys.path.append(HERE + "/..")
    from powercut.blockdev import BlockDev, PowerCut

cut_in = []  # type: list  # the generation whose commit the cut hit


def say(msg):
    print("[powercut] " + msg)


def cut_args(argv):
    """(K, TORN) from the command line or $POWERCUT_AT; K = 0: no cut."""
    k = argv[1] if len(argv) > 1 else os.getenv("POWERCUT_AT") or "0"
    torn = float(argv[2]) if len(argv) > 2 else None
    return int(k), torn


def device(k=0, torn=None):
    """The flash as this power-up finds it: flash.img, formatted if missing."""
    try:
        os.stat(IMAGE)
    except OSError:
        dev = BlockDev(BLOCK, BLOCKS)
        os.VfsLfs2.mkfs(dev)
        dev.save(IMAGE)
        say("formatted %s: littlefs2, %d blocks of %d bytes" % (IMAGE, BLOCKS, BLOCK))
    return BlockDev.load(IMAGE, BLOCK, cut_after=k or None, torn=torn)


def describe(rec):
    if rec is None:
        return "empty"
    import binascii
    import hashlib

    digest = binascii.hexlify(hashlib.sha256(rec.token.encode()).digest()).decode()
    return "gen %d token %s...(%d) sha256 %s" % (rec.gen, rec.token[:6], len(rec.token),
                                                 digest)


def watch(dev):
    """Report every load and commit of regtoken's Store; save the image after a commit,
    as a board's flash keeps it, so that a SIGKILL later loses nothing."""
    from regtoken import store

    load, commit = store.Store.load, store.Store.commit

    def watched_load(self):
        rec = load(self)
        say("load: " + describe(rec))
        return rec

    def watched_commit(self, rec):
        first, programs, erases = dev.writes() + 1, dev.programs, dev.erases
        try:
            out = commit(self, rec)
        except PowerCut:
            cut_in.append(rec.gen)
            raise
        say("commit gen %d: write points %d..%d (%d), %d programs, %d erases; %s" % (
            rec.gen, first, dev.writes(), dev.writes() - first + 1,
            dev.programs - programs, dev.erases - erases, describe(rec)))
        dev.save(IMAGE)
        return out

    store.Store.load = watched_load
    store.Store.commit = watched_commit


def show():
    os.mount(os.VfsLfs2(device()), MOUNT)
    import regtoken
    from regtoken.store import Files, Store

    say("store: " + describe(Store(Files(regtoken.load()["store_dir"])).load()))
    return 0


def run(k, torn):
    dev = device(k, torn)
    os.mount(os.VfsLfs2(dev), MOUNT)
    say("%s mounted at %s; power cut %s" % (
        IMAGE, MOUNT, "after write point %d" % k if k else "never"))
    watch(dev)
    import main

    try:
        rc = main.main()
    except PowerCut:
        dev.save(IMAGE)  # the surviving bytes
        say("power cut at write point %d, in the commit of gen %s; image saved"
            % (k, cut_in[0] if cut_in else "-"))
        return CUT
    except KeyboardInterrupt:
        say("stopped")
        rc = 0
    dev.save(IMAGE)
    return rc


if __name__ == "__main__":
    if sys.argv[1:2] == ["show"]:
        sys.exit(show())
    sys.exit(run(*cut_args(sys.argv)))
