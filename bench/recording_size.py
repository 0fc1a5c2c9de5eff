"""Recording size: bytes stored per byte of session output, vs a gzip'd asciicast.

Runs real interactive sessions through the gateway (`ssh -tt alice+web1@gateway`, bash,
recording on with default settings), then compares:
  output   bytes the client received (what the recording must reproduce)
  stored   every file the recording left in the recordings directory (.bstl and any
           side files), after the gateway went idle
  asciicast.gz  `bastille export ID --format asciicast` of the same session, gzip -6
           (what asciinema-style tools store)
Target: stored < asciicast.gz.

Workloads: ``corpus`` (cat of a synthetic terminal-output corpus, see _rig.py) and
``commands`` (output of real programs: `ls -lR /usr`, `ps auxww`, `cat /etc/services`,
`seq`, `dpkg -l`).

Known limits: compression depends on the output; these are two kinds of output, not a
survey. Keyboard input is tiny here and not a factor.

Run: python bench/recording_size.py [--corpus-mib 50]   |   --smoke
"""

from __future__ import annotations

import argparse
import gzip
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._rig import MIB, BenchRig, machine, make_terminal_corpus, shared_file

COMMANDS = (
    "ls -lR /usr 2>/dev/null | head -c {n}; ps auxww; cat /etc/services; "
    "seq 1 20000; dpkg -l | head -c {n}"
)


def run_session(rig: BenchRig, script: str) -> int:
    """One interactive session; returns output bytes the client received."""
    p = subprocess.run(
        rig.ssh("bastion", tty=True),
        input=(script + "; exit\n").encode(),
        capture_output=True,
        timeout=600,
    )
    if p.returncode != 0:
        raise RuntimeError(f"session failed ({p.returncode}): {p.stderr.decode()[-300:]}")
    return len(p.stdout)


def measure(rig: BenchRig, name: str, script: str, tmp: Path) -> str:
    gw = rig.gws["bastion"]
    rec_dir = gw.data / "recordings"
    before = set(rec_dir.rglob("*")) if rec_dir.exists() else set()
    out_bytes = run_session(rig, script)
    gw.settle()
    time.sleep(0.5)
    new = [p for p in rec_dir.rglob("*") if p not in before and p.is_file()]
    bstl = [p for p in new if p.name.endswith(".bstl")]
    if len(bstl) != 1:
        raise RuntimeError(f"expected one new recording, found {new}")
    stored = sum(p.stat().st_size for p in new)
    cast = tmp / f"{name}.cast"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "export",
            "-c",
            str(gw.config),
            str(bstl[0]),
            "--format",
            "asciicast",
            "-o",
            str(cast),
        ],
        check=True,
        capture_output=True,
    )
    gz = len(gzip.compress(cast.read_bytes(), compresslevel=6))
    return (
        f"{name:<9} {out_bytes / MIB:>10.2f} {stored / MIB:>10.3f} {gz / MIB:>13.3f} "
        f"{stored / out_bytes:>12.4f} {gz / out_bytes:>14.4f} {stored / gz:>12.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus-mib", type=int, default=50)
    ap.add_argument("--smoke", action="store_true", help="a 1 MiB corpus, short commands")
    a = ap.parse_args(argv)
    cmd_bytes = 200_000 if a.smoke else 5_000_000
    if a.smoke:
        a.corpus_mib = 1
    corpus = make_terminal_corpus(shared_file(f"corpus-{a.corpus_mib}M.txt"), a.corpus_mib * MIB)
    print(f"# recording_size: {machine()}")
    with BenchRig() as rig, tempfile.TemporaryDirectory() as tmp:
        print(
            f"{'workload':<9} {'output MiB':>10} {'stored MiB':>10} {'asciicast.gz':>13} "
            f"{'stored/byte':>12} {'cast.gz/byte':>14} {'ratio st/gz':>12}"
        )
        print(measure(rig, "corpus", f"cat {corpus}", Path(tmp)), flush=True)
        print(measure(rig, "commands", COMMANDS.format(n=cmd_bytes), Path(tmp)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
