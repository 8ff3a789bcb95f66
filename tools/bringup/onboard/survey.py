# Board side of `make board-info`, `make erase-token` and `make provision` (sent by
# tools/bringup/boardctl.py): what the board holds. It only reads, and prints one line
# @@regtoken@@<json>:
#   version, platform, machine, mem_free, fs ([total, free] bytes), root, regtoken, store
#   ({name: size, -1 for a folder}; None: no such folder), store_dir, token (the newest
#   record: gen, exp, due, its first 6 characters and its length; never the token) or
#   token_error, and token_files: every store file, folders after their contents.
# With ARGS["load"] (ARGS comes from the host as one JSON string, ARGS_JSON) also
# worth_keeping: whether Store.load() finds a token the server has not refused (410),
# loading as the device does at boot, which sets a damaged slot aside; without the
# regtoken package, which could decode the slots, the names of the slots present.
import gc
import json
import os
import sys

MARK = "@@regtoken@@"  # boardctl.MARK: the host reads the line that starts with it
ARGS = json.loads(globals().get("ARGS_JSON", "{}"))


def ls(d):
    """{name: size, -1 for a folder} of folder d ('' the root); None if it is missing."""
    try:
        names = os.listdir(d) if d else os.listdir()
    except OSError:
        return None
    out = {}
    for n in names:
        st = os.stat(d + "/" + n if d else n)
        out[n] = -1 if st[0] & 0x4000 else st[6]
    return out


def store_dir():
    try:
        with open("config.json") as f:
            return json.load(f).get("store_dir") or ""
    except Exception:
        return ""


def join(d, name):
    return d + "/" + name if d else name


def newest(d):
    """The newest valid record's summary, decoded without Store.load(), which would set a
    damaged slot aside: board-info changes nothing."""
    from regtoken.store import SLOTS, decode

    best = None
    for n in SLOTS:
        try:
            with open(join(d, n), "rb") as f:
                r = decode(f.read(2048))
        except OSError:
            r = None
        if r is not None and (best is None or r.gen > best.gen):
            best = r
    if best is None:
        return None
    return {"gen": best.gen, "exp": best.exp, "due": best.due, "head": best.token[:6],
            "len": len(best.token)}


def token_files(d):
    """Each slot (a file, or a folder holding the record) and any *.bad copy the store
    set aside. Folders come after their contents, so removing in order works."""
    try:
        from regtoken.store import SLOTS
    except ImportError:
        SLOTS = ("token.a", "token.b")
    found = []

    def add(p):
        try:
            mode = os.stat(p)[0]
        except OSError:
            return
        if mode & 0x4000:
            for n in os.listdir(p):
                add(p + "/" + n)
            p += "/"
        if p not in found:
            found.append(p)

    for s in SLOTS:
        add(join(d, s.split("/")[0]))
    for n in ls(d) or {}:
        if n.endswith(".bad"):
            add(join(d, n))
    return found


def worth_keeping(d):
    try:
        from regtoken.store import Files, Store
    except ImportError:
        return [n for n in ls(d) or {} if n in ("token.a", "token.b")]
    r = Store(Files(d)).load()
    return r is not None and r.due >= 0  # < 0: refused (410), or a provisioning operation


def survey():
    d = store_dir()
    info = {"version": sys.version, "platform": sys.platform, "root": ls(""),
            "regtoken": ls("regtoken"), "store_dir": d, "mem_free": gc.mem_free(),
            "machine": getattr(sys.implementation, "_machine", "")}
    info["store"] = ls(d) if d else info["root"]
    try:
        s = os.statvfs(".")
        info["fs"] = [s[1] * s[2], s[1] * s[4]]
    except Exception:
        pass
    try:
        rec = newest(d)
        if rec is not None:
            info["token"] = rec
    except Exception as e:
        info["token_error"] = repr(e)
    info["token_files"] = token_files(d)
    if ARGS.get("load"):
        info["worth_keeping"] = worth_keeping(d)
    return info


print(MARK + json.dumps(survey()))
