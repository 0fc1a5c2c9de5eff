"""``python -m player --data DIR [SESSION_ID]``: the player without the gateway's CLI."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from player.app import run_player
from recorder.errors import RecorderError
from recorder.settings import RecorderSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m player", description=__doc__)
    parser.add_argument("--data", required=True, help="the recorder's data directory")
    parser.add_argument("session_id", nargs="?", help="open this session directly")
    args = parser.parse_args(argv)
    data = Path(args.data)
    if not (data / "index.sqlite3").is_file():
        print(f"bastille player: error: no session index in {data}", file=sys.stderr)
        return 2
    try:
        return run_player(RecorderSettings(data_dir=data), session_id=args.session_id)
    except RecorderError as exc:
        print(f"bastille player: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
