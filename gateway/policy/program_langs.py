"""The command lines of programs that run commands: sed scripts (``e``, ``s///e``,
``w``), awk programs (``system``, pipes), vi/ex lines, less/more/man and nano prompts,
psql/mysql/sqlite3 meta-commands, gdb, ftp/sftp/telnet, ed and mail lines. Each
``check_<lang>(text)`` returns a ``langs.LangResult`` (see ``langs.py``);
``check_line(lang, text)`` picks the checker of a program's language (these, and the
interpreters of ``langs.py``).
"""

from __future__ import annotations

import re

from gateway.policy.langs import (
    _TRIVIAL_WORDS,
    LangResult,
    check_perl,
    check_python,
    check_trivial,
)

# --------------------------------------------------------------------------- sed

_SED_CMD_WITH_TEXT = "aic"
_SED_SIMPLE = "=dDgGhHlnNpPqQxz{}!#:bt T"


def check_sed(script: str) -> LangResult:
    """GNU sed: the ``e`` command and ``s///e`` run commands; ``w``/``W`` write files."""
    r = LangResult()
    i, n = 0, len(script)
    while i < n:
        if script[i] in " \t\n;":
            i += 1
            continue
        i = _sed_address(script, i)
        if i >= n:
            break
        nxt = _sed_command(script, i, r)
        if nxt is None:
            return r
        i = nxt
    return r


_SED_ADDRESS = re.compile(
    r"(?:\d+|\$|/(?:[^/\\]|\\.)*/I?M?|\\(.)(?:(?!\1).)*\1)"
    r"(?:\s*(?:,|~)\s*(?:\d+|\$|/(?:[^/\\]|\\.)*/I?M?|\+\d+|~\d+))?\s*!?\s*")


def _sed_address(script: str, i: int) -> int:
    """After the address (and ``!``) of a sed command at ``i``."""
    m = _SED_ADDRESS.match(script[i:])
    return i + m.end() if m else i


def _eol(text: str, i: int) -> int:
    """The index of the end of the line at ``i`` (its newline, or the end)."""
    end = text.find("\n", i)
    return len(text) if end < 0 else end


def _sed_command(script: str, i: int, r: LangResult) -> int | None:
    """The sed command at ``i``: where the next one starts; None when the script cannot
    be read further (uncertain)."""
    c = script[i]
    if c in "sy":
        return _sed_subst(script, i, r)
    if c == "e":
        r.unsure("sed e runs a command")
        end = _eol(script, i)
        cmd = script[i + 1 : end].strip()
        if cmd:
            r.shell.append(cmd)
        return end
    if c in "wW":
        end = _eol(script, i)
        r.writes.append(script[i + 1 : end].strip())
        return end
    nxt = _sed_skip(script, i)
    if nxt is None:
        r.unsure(f"sed command {c!r} is not checked")
    return nxt


def _sed_skip(script: str, i: int) -> int | None:
    """After a sed command that runs and writes nothing; None if it is not one."""
    c, n = script[i], len(script)
    if c == "#":
        j = script.find("\n", i)
        return n if j < 0 else j + 1
    if c in "rRbtTv:":
        if c in "rR":
            return _eol(script, i)
        stop = re.search(r"[;\n]", script[i + 1 :])
        return n if stop is None else i + 1 + stop.start()
    if c in _SED_CMD_WITH_TEXT:
        return _eol(script, i)
    if c in "qQlL":
        m = re.match(r"\s*\d*", script[i + 1 :])
        return i + 1 + (m.end() if m else 0)
    if c in _SED_SIMPLE:
        return i + 1
    return None


def _sed_subst(script: str, i: int, r: LangResult) -> int | None:
    """``s/re/text/flags`` or ``y/abc/xyz/`` at ``i``."""
    c, n = script[i], len(script)
    if i + 1 >= n:
        r.unsure("sed script that cannot be read")
        return None
    d = script[i + 1]
    j, parts = i + 2, 0
    while j < n and parts < 2:
        if script[j] == "\\":
            j += 2
            continue
        if script[j] == d:
            parts += 1
        j += 1
    if parts < 2:
        r.unsure("sed script that cannot be read")
        return None
    flags = re.match(r"[0-9gpIiMme]*", script[j:])
    f = flags.group(0) if flags else ""
    j += len(f)
    if c == "s" and "e" in f:
        r.unsure("sed s///e runs the pattern space as a command")
    if c == "s" and script[j : j + 1] == "w":
        end = _eol(script, j)
        r.writes.append(script[j + 1 : end].strip())
        j = end
    return j


# --------------------------------------------------------------------------- awk


def check_awk(program: str) -> LangResult:
    """awk: ``system()``, pipes to and from commands, ``@load``; output redirections."""
    r = LangResult()
    body = re.sub(r'"(?:[^"\\]|\\.)*"', '""', program)
    if re.search(r"\bsystem\s*\(", body):
        r.unsure("awk system() runs a command")
    if re.search(r"(?<!\|)\|(?!\|)", body):
        r.unsure("awk pipes to or from a command")
    if re.search(r"@(?:load|include)|\bextension\s*\(", body):
        r.unsure("awk loads code")
    if re.search(r"\bprintf?\b[^;{}]*>", body):
        r.writes.append("?")
    return r


# --------------------------------------------------------------------------- vi / ex

_EX_SAFE = set(
    "w write wq x xit q quit qa qall wa wall wqa wqall xa xall up update e edit ene enew n next "
    "N Next prev previous bn bnext bp bprevious b buffer ls buffers files bd bdelete sp split vs "
    "vsplit new vnew tabnew tabe tabedit tabn tabnext tabp tabprevious tabc tabclose on only "
    "clo close noh nohlsearch syn syntax colo colorscheme h help u undo red redo d delete y yank "
    "m move t co copy j join pu put > < sor sort ret retab cd pwd reg registers marks jumps "
    "ju undol undolist ve version mes messages dig digraphs f file sav saveas r read fo fold "
    "foldopen foldclose nu number p print l list z k mark ma a append i insert c change "
    "ij ijump ps psearch tj tjump ta tag tn tp changes ar args argadd diffu diffupdate "
    "difft diffthis diffo diffoff lefta rightb bel bo to topleft botright vert vertical "
    "filetype filet setf setfiletype nor norm normal".split()
) - {"nor", "norm", "normal"}
_EX_UNSAFE_SET = set(
    "shell sh shellcmdflag shcf shellpipe sp shellredir srr shellquote shq shellxquote sxq "
    "makeprg mp grepprg gp keywordprg kp equalprg ep formatprg fp diffexpr dex patchexpr pex "
    "charconvert ccv printexpr pexpr cscopeprg csprg includeexpr inex indentexpr inde "
    "foldexpr fde formatexpr fex tagfunc tfu omnifunc ofu completefunc cfu operatorfunc opfunc "
    "statusline stl tabline tal titlestring rulerformat ruf exrc ex secure modelineexpr mle "
    "luadll pythondll pythonthreedll rubydll perldll tcldll imactivatefunc imstatusfunc "
    "quickfixtextfunc qftf thesaurusfunc tsrfu findfunc ffu".split()
)


def check_ex(line: str) -> LangResult:
    """One vi/vim ex command line (without its leading ``:``)."""
    r = LangResult()
    s = line.strip()
    while s.startswith(":"):
        s = s[1:].lstrip()
    if not s:
        return r
    m = re.match(r"(?:[%.$]|\d+|'[a-z<>]|/(?:[^/\\]|\\.)*/|\?(?:[^?\\]|\\.)*\?|[,;+-]\d*|\s)*",
                 s)
    rng = m.group(0) if m else ""
    rest = s[len(rng):]
    if rest.startswith("!"):
        cmd = rest[1:]
        _bang(cmd, r, "vi")
        if rng.strip() and r.shell:  # a filter: the lines go to the command's input
            r.piped.append(r.shell.pop())
        return r
    m2 = re.match(r"([A-Za-z]+|[<>&~=#@]|!)(!?)\s*(.*)", rest, re.S)
    if m2 is None:
        if not (rest.strip() == "" and rng.strip()):
            r.unsure(f"vi command {rest[:20]!r} is not checked")
        return r
    _ex_command(m2.group(1), m2.group(3), r)
    return r


def _ex_command(name: str, arg: str, r: LangResult) -> None:
    if name in ("r", "read", "w", "write") and arg.startswith("!"):
        _bang(arg[1:], r, "vi")
        if name in ("w", "write") and r.shell:  # the buffer goes to the command's input
            r.piped.append(r.shell.pop())
        return
    if name in ("g", "global", "v", "vglobal"):
        _ex_global(arg, r)
        return
    if name in ("s", "substitute", "&", "~"):
        if "\\=" in arg:
            r.unsure("vi substitute with an expression")
        return
    if name in ("set", "se", "setlocal", "setl", "setglobal", "setg"):
        _ex_set(arg, r)
        return
    if _ex_quit_or_write(name, arg, r):
        return
    if name in _EX_SAFE:
        return
    if name in ("sh", "shell", "term", "terminal"):
        r.unsure("vi opens a shell")
        return
    r.unsure(f"vi :{name} is not checked (it may run commands)")


def _ex_quit_or_write(name: str, arg: str, r: LangResult) -> bool:
    """``:q``, ``:x``, ``:w [file]``...: whether it leaves, and the file it writes (True
    for a write)."""
    if name in ("q", "quit", "qa", "qall", "x", "xit", "xa", "xall", "wq", "wqa", "wqall"):
        r.exits = True
    if name not in ("w", "write", "wq", "x", "xit", "up", "update", "sav", "saveas", "wa",
                    "wall", "wqa", "xa"):
        return False
    target = arg.strip()
    if target.startswith(">>"):
        target = target[2:].strip()
    r.writes.append(target or "%")
    return True


def _ex_global(arg: str, r: LangResult) -> None:
    """``:g/pattern/command``: the command is checked."""
    gm = re.match(r"(.)(?:(?!\1).|\\.)*\1(.*)", arg, re.S)
    if gm is None:
        r.unsure("vi :g command that cannot be read")
        return
    sub = check_ex(gm.group(2) or "p")
    r.shell += sub.shell
    r.uncertain += sub.uncertain
    r.writes += sub.writes


def _ex_set(arg: str, r: LangResult) -> None:
    for opt in re.findall(r"(?:no|inv)?([a-z]+)", arg):
        if opt in _EX_UNSAFE_SET:
            r.unsure(f"vi :set {opt} changes what runs")


def _bang(cmd: str, r: LangResult, where: str) -> None:
    c = cmd.strip()
    if not c:
        r.unsure(f"{where} opens a shell")
        return
    if re.search(r"(?<!\\)!", c):
        r.unsure(f"{where} repeats an earlier command (!)")
    r.shell.append(c)


# --------------------------------------------------------------------------- pagers, nano


def check_less(line: str) -> LangResult:
    """The bottom line of less/more/man when Enter is pressed."""
    r = LangResult()
    s = line.strip()
    if s.startswith("!"):
        _bang(s[1:], r, "less")
    elif s.startswith("|"):
        cmd = s[2:] if len(s) > 1 else ""
        cmd = cmd.lstrip("!").strip()
        if not cmd:
            r.unsure("less pipes into a shell")
        else:
            r.piped.append(cmd)
    elif re.match(r"(?:log file|Log file):", s):
        r.writes.append(s.split(":", 1)[1].strip() or "?")
    elif s.startswith(":") and s[1:].strip() in ("q", "Q", "x", "quit"):
        r.exits = True
    return r


def check_nano(line: str) -> LangResult:
    r = LangResult()
    m = re.match(r"\s*(?:Command to execute(?: in new buffer)?|Execute Command)\s*:\s*(.*)",
                 line)
    if m:
        if m.group(1).strip():
            r.shell.append(m.group(1).strip())
        else:
            r.unsure("nano runs a command")
        return r
    m = re.match(r"\s*File Name to (?:Write|Append to|Prepend to)[^:]*:\s*(.*)", line)
    if m:
        r.writes.append(m.group(1).strip() or "%")
    return r


# --------------------------------------------------------------------------- SQL clients

_PSQL_SAFE = re.compile(
    r"^\\(?:d\w*\+?S?|l\+?|list|c|connect|x|timing|q|quit|\?|h|help|conninfo|encoding|echo|"
    r"qecho|warn|set|unset|pset|a|t|H|T|f|C|z|sf\+?|sv\+?|gset|gdesc|gx?|watch|prompt|"
    r"errverbose|p|print|r|reset|if|elif|else|endif|crosstabview|bind|parse|close|"
    r"copyright|drds|dconfig|dp|dx|dy|gexec|sendpipeline|syncpipeline|startpipeline|"
    r"endpipeline|flushrequest|flush|getresults|lo_list|restrict|unrestrict)(?:\s|$)"
)


def check_psql(line: str) -> LangResult:
    r = LangResult()
    s = line.strip()
    if s in ("\\q", "\\quit", "quit", "exit", "\\q;"):
        r.exits = True
        return r
    for meta in re.finditer(r"\\(\S+)\s*([^\\]*)", s):
        _psql_meta(meta.group(1), meta.group(2), r)
    _sql_programs(s, r)
    return r


def _psql_meta(name: str, arg: str, r: LangResult) -> None:
    """One backslash command of psql."""
    text = "\\" + name + " " + arg
    if name == "!":
        _bang(arg, r, "psql")
    elif name in ("o", "out", "g", "gx", "w", "write") and arg.strip().startswith("|"):
        cmd = arg.strip()[1:].strip()
        r.piped.append(cmd) if cmd else r.unsure("psql pipes to a command")
    elif name in ("o", "out", "w", "write", "g", "gx") and arg.strip():
        r.writes.append(arg.strip().split()[0])
    elif name == "copy":
        pm = re.search(r"\bprogram\s+'((?:[^']|'')*)'", arg, re.I)
        if pm:
            r.piped.append(pm.group(1).replace("''", "'"))
        elif re.search(r"\bprogram\b", arg, re.I):
            r.unsure("psql \\copy program")
    elif name in ("e", "edit", "ef", "ev"):
        r.unsure("psql runs an editor, then the edited query")
    elif name in ("i", "include", "ir", "include_relative"):
        r.unsure("psql runs a file of commands")
    elif name in ("setenv", "cd", "lo_export", "lo_import", "getenv") or not _PSQL_SAFE.match(
            text):
        r.unsure(f"psql \\{name} is not checked")


def _sql_programs(s: str, r: LangResult) -> None:
    sql = re.sub(r"\\\S+[^\\]*", " ", s)
    pm = re.search(r"\bprogram\s+'((?:[^']|'')*)'", sql, re.I)
    if pm:
        r.piped.append(pm.group(1).replace("''", "'"))
    elif re.search(r"\bcopy\b.*\bprogram\b", sql, re.I | re.S):
        r.unsure("COPY ... PROGRAM runs a command")
    if re.search(r"\blanguage\s+['\"]?\w*u['\"]?\b|\bplsh\b", sql, re.I):
        r.unsure("a function in an untrusted language runs code on the server")
    if re.search(r"\b(?:sys_exec|sys_eval|lo_export|pg_execute_server_program|load_extension"
                 r"|edit)\s*\(", sql, re.I):
        r.unsure("an SQL function that runs programs or writes files")
    if re.search(r"\binto\s+(?:outfile|dumpfile)\b", sql, re.I):
        r.writes.append("?")


_MYSQL_SAFE = frozenset(
    "use status help exit quit connect delimiter ego go print prompt rehash warnings nowarning "
    "charset clear nopager notee resetconnection query_attributes ssl_session_data_print "
    "\\g \\G \\c \\r \\u \\s \\h \\? \\q \\d \\C \\w \\W \\p \\R \\# \\n \\t".split()
)


def check_mysql(line: str) -> LangResult:
    r = LangResult()
    s = line.strip()
    low = s.lower().rstrip(";")
    if low in ("exit", "quit", "\\q"):
        r.exits = True
        return r
    m = re.match(r"(?i)(system|\\!)\s*(.*)", s)
    if m:
        _bang(m.group(2), r, "mysql")
        return r
    m = re.match(r"(?i)(pager|\\P|edit|\\e|source|\\\.|tee|\\T)(?:\s+(.*))?$", s)
    if m:
        word = m.group(1).lower()
        if word in ("tee", "\\t"):
            r.writes.append((m.group(2) or "?").strip())
        else:
            r.unsure(f"mysql {m.group(1)} runs a program or a file of commands")
        return r
    first = low.split()[0] if low.split() else ""
    if first.startswith("\\") and first not in _MYSQL_SAFE:
        r.unsure(f"mysql {first} is not checked")
    _sql_programs(s, r)
    return r


def check_sqlite(line: str) -> LangResult:
    r = LangResult()
    s = line.strip()
    if s.startswith("."):
        name, _, arg = s[1:].partition(" ")
        if name in ("quit", "exit", "q"):
            r.exits = True
        elif name in ("shell", "system"):
            _bang(arg, r, "sqlite3")
        elif name in ("output", "once", "log"):
            a = arg.strip()
            if a.startswith("|"):
                r.piped.append(a[1:].strip())
            elif a.startswith("-") or not a:
                r.unsure(f"sqlite3 .{name} {a} opens a program") if a else None
            else:
                r.writes.append(a)
        elif name in ("read",):
            r.unsure("sqlite3 .read runs a file of commands" if not arg.strip().startswith("|")
                     else "sqlite3 .read runs a command")
        elif name in ("load", "excel", "import", "backup", "save", "clone", "open", "restore",
                      "archive", "ar", "cd", "dump", "recover"):
            r.unsure(f"sqlite3 .{name} is not checked")
        return r
    _sql_programs(s, r)
    return r


# --------------------------------------------------------------------------- gdb, ftp, ed, mail

_GDB_SAFE = frozenset(
    "break b br tbreak tb delete d disable dis enable en continue c cont next n step s stepi si "
    "nexti ni finish fin until u advance bt backtrace where frame f up down info i list l x "
    "disassemble display undisplay watch rwatch awatch ptype whatis quit q help h detach thread "
    "threads kill k condition ignore commands end tui layout focus refresh file symbol-file "
    "directory dir show".split()
)


def check_gdb(line: str) -> LangResult:
    r = LangResult()
    s = line.strip()
    if not s:
        return r
    m = re.match(r"(shell|!)\s*(.*)", s)
    if m:
        _bang(m.group(2), r, "gdb")
        return r
    word = re.match(r"[\w-]+|\S", s)
    name = word.group(0) if word else ""
    if name in ("q", "quit"):
        r.exits = True
        return r
    if name in ("p", "print", "output", "set", "call", "printf", "echo", "eval") or \
            name not in _GDB_SAFE:
        if name in ("p", "print", "output", "set", "echo") and "(" not in s and "$_" not in s:
            return r
        r.unsure(f"gdb {name} may run code")
    return r


def check_ftp(line: str) -> LangResult:
    """ftp, sftp, lftp, telnet: ``!cmd`` runs a local shell command."""
    r = LangResult()
    s = line.strip()
    if s.startswith("!"):
        _bang(s[1:], r, "ftp")
    elif s in ("bye", "quit", "exit"):
        r.exits = True
    elif s.split(" ", 1)[0] in ("lpipe", "pipe", "local", "shell", "source"):
        r.unsure(f"{s.split(' ', 1)[0]} runs a command")
    return r


def check_ed(line: str) -> LangResult:
    r = LangResult()
    s = line.strip()
    m = re.match(r"[0-9.,$;+\-'a-z]*\s*([!erwW])\s*!?(.*)", s)
    if s.startswith("!") or (m and m.group(1) in "erwW" and re.match(
            r"[0-9.,$;+\-'a-z]*\s*[erwW]\s*!", s)):
        cmd = s.split("!", 1)[1]
        _bang(cmd, r, "ed")
        return r
    if m and m.group(1) in "wW":
        r.writes.append(m.group(2).strip() or "%")
    if s in ("q", "Q"):
        r.exits = True
    return r


def check_mail(line: str) -> LangResult:
    r = LangResult()
    s = line.strip()
    m = re.match(r"~?!\s*(.*)", s)
    if m and (s.startswith("!") or s.startswith("~!")):
        _bang(m.group(1), r, "mail")
    elif s.startswith(("~|", "|", "~<!", "pipe", "~e", "~v")):
        r.unsure("mail pipes to or starts a program")
    return r


CHECKERS = {
    "vi": check_ex,
    "ex": check_ex,
    "less": check_less,
    "nano": check_nano,
    "psql": check_psql,
    "mysql": check_mysql,
    "sqlite": check_sqlite,
    "gdb": check_gdb,
    "ftp": check_ftp,
    "ed": check_ed,
    "mail": check_mail,
}


def check_line(lang: str, text: str) -> LangResult:
    """A line submitted to a program whose language is ``lang``."""
    if lang == "python":
        return check_python(text, repl=True)
    if lang in CHECKERS:
        return CHECKERS[lang](text)
    if lang == "harmless":
        return LangResult()
    if lang == "perl":
        return check_perl(text)
    if lang in _TRIVIAL_WORDS:
        return check_trivial(lang, text)
    r = LangResult()
    r.unsure(f"a line for {lang or 'a program bastille cannot read'}")
    return r
