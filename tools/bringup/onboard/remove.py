# Board side of `make erase-token` (sent by tools/bringup/boardctl.py): removes ARGS["paths"] in
# order (a path ending in "/" is a folder, emptied by the paths before it) and prints
# @@regtoken@@<how many>. ARGS comes from the host as one JSON string, ARGS_JSON.
import json
import os

MARK = "@@regtoken@@"  # boardctl.MARK: the host reads the line that starts with it
ARGS = json.loads(globals().get("ARGS_JSON", "{}"))


def remove(paths):
    for p in paths:
        if p.endswith("/"):
            os.rmdir(p[:-1])
        else:
            os.remove(p)
    return len(paths)


print(MARK + json.dumps(remove(ARGS.get("paths", []))))
