#!/usr/bin/env python3
"""Pack a bastille source tree into a reproducible sdist-style tar.gz.

Usage: pack_source.py SOURCE_DIR OUTPUT EXCLUDES (comma-separated fnmatch patterns)

The archive has one top-level directory (``bastille-src/``) as pip expects of a source
archive, entries sorted, owner 0:0, a fixed mtime and a gzip header without a time stamp,
so the same tree always gives the same bytes: Ansible's copy then reports "changed" only
when the source really changed. OUTPUT is replaced only if its bytes would differ; the
script prints "changed" or "unchanged". Standard library only (runs on the controller or
on the host).
"""

from __future__ import annotations

import fnmatch
import gzip
import io
import os
import sys
import tarfile
from pathlib import Path

_MTIME = 946684800  # 2000-01-01: any fixed time makes the archive reproducible


def _excluded(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def pack(source: Path, patterns: list[str]) -> bytes:
    """Return the archive bytes for ``source`` without the excluded names."""
    if not (source / "pyproject.toml").is_file():
        raise SystemExit(f"pack_source: {source} has no pyproject.toml")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(source):
            dirs[:] = sorted(d for d in dirs if not _excluded(d, patterns))
            for name in sorted(files):
                if _excluded(name, patterns):
                    continue
                path = Path(root) / name
                if not path.is_file():
                    continue
                info = tar.gettarinfo(str(path), "bastille-src/" + str(path.relative_to(source)))
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = _MTIME
                info.mode = 0o755 if info.mode & 0o111 else 0o644
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)


def main(argv: list[str]) -> int:
    """Entry point: write OUTPUT if needed, print changed/unchanged."""
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    source = Path(argv[1]).expanduser().resolve()
    output = Path(argv[2]).expanduser()
    patterns = [p for p in argv[3].split(",") if p]
    data = pack(source, patterns)
    if output.is_file() and output.read_bytes() == data:
        print("unchanged")
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, output)
    print("changed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
