"""Code size: .mpy bytes per module and architecture (mpy-cross), the same with -O3 and no
line numbers, the loaded modules merged into one file, and string-literal bytes."""

from __future__ import annotations

import ast
import os
import subprocess
import tempfile
from typing import Any

from bringup.unixboard import FIRMWARE, compile_mpy, source_name

from bench.plan import ARCHS, BASELINE, tool


def mpy_size(src: str, name: str, out_dir: str, *flags: str) -> int:
    """Bytes of src compiled with flags; name is the source name it embeds, as on a board."""
    out = os.path.join(out_dir, os.path.basename(src)[:-3] + "".join(flags) + ".mpy")
    subprocess.run([tool("mpy-cross"), *flags, "-s", name, "-o", out, src], check=True)
    return os.path.getsize(out)


def module_name(path: str) -> str:
    base = os.path.basename(path)[:-4]
    return "regtoken" if base == "__init__" else "regtoken." + base


def module_source(module: str) -> str:
    name = "__init__" if module == "regtoken" else module.split(".")[1]
    return os.path.join(FIRMWARE, "regtoken", name + ".py")


def literal_bytes(src: str) -> int:
    """Bytes of string constants in a module (docstrings excluded: MicroPython drops them)."""
    with open(src) as f:
        tree = ast.parse(f.read())
    docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
    return sum(len(n.value.encode()) if isinstance(n.value, str) else len(n.value)
               for n in ast.walk(tree) if isinstance(n, ast.Constant)
               and isinstance(n.value, str | bytes) and id(n) not in docs)


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def merged_size(modules: list[str], out_dir: str) -> int:
    """.mpy bytes of these modules' sources as one file, with -O3 and no line numbers: the
    most that packaging alone can save (one header, one qstr table)."""
    src = os.path.join(out_dir, "merged.py")
    with open(src, "w") as f:
        f.write("\n".join(read(module_source(m)).decode() for m in modules))
    return mpy_size(src, "regtoken.py", out_dir, "-O3", "-X", "no-source-lines")


def code_size(loaded: list[str]) -> dict[str, Any]:
    """.mpy bytes per module and architecture, the same with -O3 and no line numbers, the
    loaded modules merged into one, string-literal bytes per module, and the baseline's."""
    with tempfile.TemporaryDirectory(prefix="bench-mpy-") as tmp:
        blobs = {a: {module_name(f): read(f)
                     for f in compile_mpy(FIRMWARE, os.path.join(tmp, a), a)} for a in ARCHS}
        modules = sorted(blobs[ARCHS[0]])
        lean = {m: mpy_size(module_source(m), source_name(m.replace(".", "/") + ".py"),
                            tmp, "-O3", "-X", "no-source-lines") for m in modules}
        baseline = {a: mpy_size(BASELINE, "naive_baseline.py", tmp, "-march=" + a)
                    for a in ARCHS}
        merged = merged_size(loaded, tmp)
    return {"merged": merged, "arch": {a: {m: len(b) for m, b in blobs[a].items()} for a in ARCHS},
            "modules": modules, "lean": lean, "baseline": baseline,
            "text": {m: literal_bytes(module_source(m)) for m in modules},
            "main_py": os.path.getsize(os.path.join(FIRMWARE, "main.py")),
            "baseline_py": os.path.getsize(BASELINE),
            "identical": all(blobs[a] == blobs[ARCHS[0]] for a in ARCHS)}
