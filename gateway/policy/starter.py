"""The starter policy shipped with the demo config, as data.

``STARTER_RULES`` is the single source: ``starter_rules()`` compiles it for tests and
the demo, ``starter_toml()`` renders the same rules as ``[[policy.rules]]`` tables for
a config file. The regexes are written against the normalized command form (see
docs/policy.md): options first in canonical order (``rm -r -f``), then operands, then
redirections.

Known limits: a starter policy, not a complete one; it blocks the well-known
destructive commands and asks for approval on risky ones, and relies on
``on_uncertain`` for anything the parser cannot see through.
"""

from __future__ import annotations

import re

from gateway.policy.rules import Action, Rule

_SYSTEM_DIRS = r"(?:bin|boot|dev|etc|home|lib|lib32|lib64|opt|proc|root|sbin|srv|sys|usr|var)"
_DISKS = r"(?:sd[a-z]|hd[a-z]|vd[a-z]|xvd[a-z]|nvme\d|mmcblk\d|dm-\d|md\d|mapper/|disk/)"
DISK_GLOBS = ("/dev/sd*", "/dev/hd*", "/dev/vd*", "/dev/xvd*", "/dev/nvme*", "/dev/mmcblk*",
              "/dev/dm-*", "/dev/md*", "/dev/mapper/**", "/dev/disk/**")

# (name, regex, action, why) in evaluation order; effect rules in STARTER_EFFECTS.
STARTER_RULES: tuple[tuple[str, str, str, str], ...] = (
    (
        "no-recursive-root-delete",
        r"^rm -r(?: \S+)* (?:/|/\*|/" + _SYSTEM_DIRS + r"(?:/\*)?|~/?\*?)(?: |$)",
        "deny",
        "recursive delete of /, /* , a top-level system directory or the home directory",
    ),
    (
        "no-preserve-root",
        r"^(?:rm|chmod|chown|chgrp)(?: \S+)* --no-preserve-root(?: |$)",
        "deny",
        "--no-preserve-root is never needed on a managed host",
    ),
    (
        "no-filesystem-format",
        r"^(?:mkfs(?:\.\S+)?|mke2fs|mkswap|wipefs|mkfs\.\S+)(?: |$)",
        "deny",
        "formatting or wiping a filesystem",
    ),
    (
        "no-raw-disk-write",
        r"^(?:dd(?: \S+)* of=/dev/" + _DISKS + r"|shred(?: \S+)* /dev/" + _DISKS + r")",
        "deny",
        "writing to a block device (any program, any redirection: see writes)",
    ),
    (
        "no-power-off",
        r"^(?:shutdown|reboot|halt|poweroff)(?: |$)"
        r"|^systemctl(?: -\S+)* (?:reboot|poweroff|halt|kexec|emergency|rescue)(?: |$)"
        r"|^(?:init|telinit) [06](?: |$)",
        "deny",
        "shutting down or rebooting the target",
    ),
    (
        "approve-service-stop",
        r"^systemctl(?: -\S+)* (?:stop|restart|disable|mask|kill|isolate)(?: |$)"
        r"|^service \S+ (?:stop|restart)(?: |$)",
        "approve",
        "stopping or restarting services",
    ),
    (
        "approve-firewall-change",
        r"^(?:iptables|ip6tables)(?: \S+)* (?:-[ADIRFXPNZE]\S*|--(?:append|delete|insert|replace"
        r"|flush|policy|delete-chain|new-chain|zero|rename-chain))(?: |$)"
        r"|^(?:iptables-restore|ip6tables-restore)(?: |$)"
        r"|^nft (?:-\S+ )*(?:add|delete|flush|insert|replace|create|destroy|-f)(?: |$)"
        r"|^ufw (?:allow|deny|reject|delete|disable|reset|limit|default)(?: |$)",
        "approve",
        "changing firewall rules",
    ),
    (
        "approve-account-change",
        r"^(?:userdel|groupdel|deluser|delgroup|useradd|adduser|usermod|groupmod|passwd"
        r"|chpasswd|vipw)(?: |$)|^visudo(?! -c)(?: |$)",
        "approve",
        "changing accounts or passwords",
    ),
    (
        "approve-world-writable",
        r"^chmod(?: \S+)* (?:0?777|a\+rwx|ugo\+rwx|a=rwx|[ugoa]*\+[rwx]*s[rwx]*)(?: |$)",
        "approve",
        "world-writable or setuid permissions",
    ),
    (
        "approve-recursive-chown-system",
        r"^(?:chown|chgrp|chmod) -R(?: \S+)* (?:/|/" + _SYSTEM_DIRS + r")/?(?: |$)",
        "approve",
        "recursive ownership or mode change of a system directory",
    ),
    (
        "approve-kill-all",
        r"^(?:kill(?: \S+)* -1|killall5|pkill(?: \S+)* -u root)(?: |$)",
        "approve",
        "killing every process",
    ),
    (
        "approve-crontab-remove",
        r"^crontab(?: \S+)* -r(?: |$)",
        "approve",
        "removing a crontab",
    ),
    (
        "approve-find-delete",
        r"^find (?:/|/" + _SYSTEM_DIRS + r")/?(?: \S+)* -(?:delete|exec rm|execdir rm)(?: |$)",
        "approve",
        "find deleting under a system directory",
    ),
    (
        "approve-history-wipe",
        r"^history(?: \S+)* -[cw]|^(?:shred|rm)(?: \S+)* (?:\S*/)?\.bash_history(?: |$)"
        r"|^(?:rm|shred|truncate)(?: \S+)* /var/log(?:/\S*)?(?: |$)",
        "approve",
        "wiping shell history or logs",
    ),
    (
        "approve-read-shadow",
        r"^(?:cat|less|more|head|tail|cp|scp|base64|xxd|strings|vi|vim|nano|sftp-get)"
        r"(?: \S+)* /etc/(?:shadow|gshadow)(?:-)?(?: |$)",
        "approve",
        "reading password hashes",
    ),
)


# rule name -> (writes, deletes): effect globs added to that rule
STARTER_EFFECTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "no-raw-disk-write": (DISK_GLOBS, ()),
}


def starter_rules() -> list[Rule]:
    """The starter rules, compiled."""
    out: list[Rule] = []
    for name, rx, action, _ in STARTER_RULES:
        writes, deletes = STARTER_EFFECTS.get(name, ((), ()))
        out.append(Rule(name, re.compile(rx), Action(action), writes=writes, deletes=deletes))
    return out


def starter_toml() -> str:
    """The starter rules as ``[[policy.rules]]`` tables (TOML literal strings)."""
    out: list[str] = []
    for name, rx, action, why in STARTER_RULES:
        assert "'" not in rx and "\n" not in rx
        text = f'# {why}\n[[policy.rules]]\nname = "{name}"\nmatch = \'{rx}\'\n'
        writes, deletes = STARTER_EFFECTS.get(name, ((), ()))
        if writes:
            text += "writes = [" + ", ".join(f'"{g}"' for g in writes) + "]\n"
        if deletes:
            text += "deletes = [" + ", ".join(f'"{g}"' for g in deletes) + "]\n"
        out.append(text + f'action = "{action}"\n')
    return "\n".join(out)
