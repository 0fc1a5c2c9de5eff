"""Ansible connection plugin for the role's tests: run tasks inside a chroot directory.

The inventory host name is the chroot directory (like community.general.chroot, which is
not installed here: that collection ships only in the large ``ansible`` bundle). Each
command runs as ``chroot DIR /bin/sh -c CMD`` with a clean environment; files go in and
out through ``cat`` inside the chroot, so symlinks are resolved inside it, never on the
controller. Needs root. Known limits: no privilege escalation (tasks already run as root
inside the chroot), no pipelining of stdin-heavy modules beyond what ``communicate`` holds.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from typing import Any

from ansible.errors import AnsibleError
from ansible.plugins.connection import ConnectionBase

DOCUMENTATION = """
name: bastille_chroot
short_description: Run tasks in a local chroot directory (bastille's tests)
description:
  - The inventory host name is the path of the chroot directory.
author: bastille developers
options: {}
"""

_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
}


class Connection(ConnectionBase):
    """Run commands and move files with ``chroot(8)``."""

    transport = "bastille_chroot"
    has_pipelining = True
    has_tty = False
    default_user = "root"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chroot = self._play_context.remote_addr

    def _connect(self) -> Connection:
        if not os.path.isfile(os.path.join(self.chroot, "bin/sh")):
            raise AnsibleError(f"{self.chroot} is not a chroot directory (no /bin/sh)")
        self._connected = True
        return self

    def _run(
        self, cmd: str, stdin: Any = subprocess.PIPE, in_data: bytes | None = None
    ) -> tuple[int, bytes, bytes]:
        proc = subprocess.Popen(
            ["chroot", self.chroot, "/bin/sh", "-c", cmd],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_ENV,
        )
        out, err = proc.communicate(in_data)
        return proc.returncode, out, err

    def exec_command(
        self, cmd: str, in_data: bytes | None = None, sudoable: bool = False
    ) -> tuple[int, bytes, bytes]:
        """Run ``cmd`` with ``/bin/sh`` inside the chroot."""
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        return self._run(cmd, in_data=in_data)

    def put_file(self, in_path: str, out_path: str) -> None:
        """Copy a controller file to ``out_path`` inside the chroot."""
        super().put_file(in_path, out_path)
        with open(in_path, "rb") as fh:
            rc, _, err = self._run(f"cat > {shlex.quote(out_path)}", stdin=fh)
        if rc != 0:
            raise AnsibleError(f"put_file to {out_path} failed: {err.decode(errors='replace')}")

    def fetch_file(self, in_path: str, out_path: str) -> None:
        """Copy ``in_path`` inside the chroot to a controller file."""
        super().fetch_file(in_path, out_path)
        rc, out, err = self._run(f"cat {shlex.quote(in_path)}")
        if rc != 0:
            raise AnsibleError(f"fetch_file {in_path} failed: {err.decode(errors='replace')}")
        with open(out_path, "wb") as fh:
            fh.write(out)

    def close(self) -> None:
        """Nothing to close: every command is its own process."""
        self._connected = False
