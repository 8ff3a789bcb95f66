# Board side of `make deploy` and `make provision` (sent by tools/bringup/deploy.py): the sha256 of
# each of ARGS["files"] that exists, and of every file inside the folders ARGS["dirs"]
# ("dir/": "" for each folder found). Prints @@regtoken@@<json {path: hex}>. ARGS comes
# from the host as one JSON string, ARGS_JSON.
import binascii
import hashlib
import json
import os

MARK = "@@regtoken@@"  # boardctl.MARK: the host reads the line that starts with it
ARGS = json.loads(globals().get("ARGS_JSON", "{}"))


def sha256(p):
    d = hashlib.sha256()
    with open(p, "rb") as f:
        while True:
            b = f.read(1024)
            if not b:
                break
            d.update(b)
    return binascii.hexlify(d.digest()).decode()


def walk(d, out):
    try:
        names = os.listdir(d)
    except OSError:
        return
    out[d + "/"] = ""
    for n in names:
        p = d + "/" + n
        if os.stat(p)[0] & 0x4000:
            walk(p, out)
        else:
            out[p] = sha256(p)


def hashes(files, dirs):
    out = {}
    for p in files:
        try:
            out[p] = sha256(p)
        except OSError:
            pass
    for d in dirs:
        walk(d, out)
    return out


print(MARK + json.dumps(hashes(ARGS.get("files", []), ARGS.get("dirs", []))))
