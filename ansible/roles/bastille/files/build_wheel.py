#!/usr/bin/env python3
"""Build a bastille wheel from a source tree on the controller, reproducibly.

Usage: build_wheel.py SOURCE_DIR OUTPUT_DIR EXCLUDES [PIP_ARGS...]

The tree (without EXCLUDES, comma-separated fnmatch patterns) is packed with
pack_source.py's reproducible archive; when its bytes differ from the last build's (or
no wheel is there) ``pip wheel --no-deps`` builds it with ``SOURCE_DATE_EPOCH`` set, so
the same sources always give the same wheel bytes and Ansible copies and installs it
only when the sources changed. The wheel is pure Python (``BASTILLE_PURE_WHEEL``: the
masker's C projection is left out, since the controller may not be the hosts'
platform). Prints one JSON line: {"changed": bool, "wheel": PATH}.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pack_source import pack  # noqa: E402

EPOCH = "946684800"  # 2000-01-01, the archive's time stamps too


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    source = Path(argv[1]).expanduser().resolve()
    out = Path(argv[2]).expanduser()
    patterns = [p for p in argv[3].split(",") if p]
    archive = pack(source, patterns)
    digest = hashlib.sha256(archive).hexdigest()
    out.mkdir(parents=True, exist_ok=True)
    stamp = out / "source.sha256"
    wheels = sorted(out.glob("*.whl"))
    if len(wheels) == 1 and stamp.is_file() and stamp.read_text().strip() == digest:
        print(json.dumps({"changed": False, "wheel": str(wheels[0])}))
        return 0
    with tempfile.TemporaryDirectory(prefix="bastille-wheel-") as tmp:
        src = Path(tmp) / "bastille-src.tar.gz"
        src.write_bytes(archive)
        built = Path(tmp) / "dist"
        # a pure wheel: the controller's platform may not be the hosts' (setup.py)
        env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH, "BASTILLE_PURE_WHEEL": "1"}
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                               "--disable-pip-version-check", "-w", str(built), *argv[4:],
                               str(src)], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(proc.stdout[-3000:] + proc.stderr[-3000:], file=sys.stderr)
            return 1
        found = sorted(built.glob("bastille-*.whl"))
        if len(found) != 1:
            print(f"build_wheel: expected one wheel, got {found}", file=sys.stderr)
            return 1
        for old in wheels:
            old.unlink()
        shutil.move(str(found[0]), out / found[0].name)
        stamp.write_text(digest + "\n")
        print(json.dumps({"changed": True, "wheel": str(out / found[0].name)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
