"""The command-running constructs of other languages: inline code, REPL and editor lines.

Each ``check_<lang>(text)`` returns a ``LangResult``: shell commands the text runs (they
are then analysed as bash: ``:!rm -rf /`` in vim is decided like ``rm -rf /``), paths
it writes, reasons it is uncertain, and whether the line leaves the program. Closed
world again: a construct that is not known to be harmless is uncertain.

* python: parsed with ``ast``; certain only if every call is a harmless builtin or a
  method from an allowlist, imports are from an allowlist of modules, and no name or
  attribute reaches the interpreter's internals (``_``-prefixed, ``eval``, ``open``...);
* sed scripts (``e``, ``s///e``, ``w``), awk programs (``system``, pipes, redirections);
* vi/vim ex lines, less/more/man prompt lines, nano prompts;
* psql, mysql, sqlite3 meta-commands and SQL that runs programs;
* gdb, ftp/sftp/telnet, ed, mail lines;
* other interpreters (perl, ruby, node, php, lua, tcl): only trivial lines are certain.

Known limits: a program's own configuration (``.vimrc`` mappings, ``.psqlrc``) is not
read; keys that act without Enter inside a program are held by ``keys.py``.
"""

from __future__ import annotations

import ast
import codeop
import re
import shlex
from dataclasses import dataclass, field


@dataclass
class LangResult:
    """What a piece of another language's code does, as far as the shell is concerned."""

    shell: list[str] = field(default_factory=list)  # shell command lines it runs
    piped: list[str] = field(default_factory=list)  # ... that also get data on stdin
    writes: list[str] = field(default_factory=list)  # paths ("%": the program's own file)
    uncertain: list[str] = field(default_factory=list)
    exits: bool = False  # the line leaves the program (back to the shell)
    incomplete: bool = False  # the program waits for more lines (a Python block)

    def unsure(self, why: str) -> None:
        if why not in self.uncertain:
            self.uncertain.append(why)


# --------------------------------------------------------------------------- python

PY_SAFE_CALLS = frozenset(
    "print len str int float bool list dict set tuple frozenset sorted reversed sum min max "
    "abs round range enumerate zip map filter repr hex oct bin chr ord divmod pow any all "
    "format isinstance issubclass hash iter next slice bytes bytearray complex ascii callable "
    "dir id".split()
)
PY_DENY_NAMES = frozenset(
    "eval exec compile open __import__ getattr setattr delattr globals locals vars breakpoint "
    "input help exit quit memoryview type object super classmethod staticmethod property "
    "__builtins__ __loader__ __spec__ license credits copyright".split()
)
PY_SAFE_METHODS = frozenset(
    "append extend insert pop remove clear copy count index sort reverse keys values items get "
    "update setdefault join split rsplit splitlines strip lstrip rstrip upper lower title "
    "capitalize casefold replace startswith endswith find rfind format encode decode isdigit "
    "isalpha isalnum isspace isupper islower zfill center ljust rjust partition rpartition "
    "loads dumps now today utcnow isoformat strftime strptime fromtimestamp fromisoformat "
    "timestamp date time total_seconds sqrt floor ceil log log2 log10 exp sin cos tan hypot "
    "gcd factorial hexdigest digest sha256 sha1 md5 sha512 blake2b b64encode b64decode "
    "urlsafe_b64encode urlsafe_b64decode b16encode b16decode hexlify unhexlify match search "
    "fullmatch findall finditer sub subn escape group groups groupdict span start end "
    "randint choice random shuffle sample uniform seed most_common elements appendleft "
    "popleft rotate ip_address ip_network ip_interface hosts subnets supernet uuid4 uuid1 "
    "mean median stdev variance mode pformat pprint dedent indent wrap fill shorten pack "
    "unpack calcsize heappush heappop heapify bisect bisect_left bisect_right insort "
    "deepcopy astimezone replace weekday isoweekday days seconds to_bytes from_bytes "
    "bit_length conjugate is_integer as_integer_ratio limit_denominator quantize "
    "normalize product permutations combinations chain groupby accumulate islice cycle "
    "repeat reduce partial lru_cache namedtuple defaultdict OrderedDict Counter deque "
    "Decimal Fraction timedelta datetime date time timezone ZoneInfo UUID token_hex "
    "token_urlsafe compress decompress crc32 adler32 lower_bound read readline readlines "
    "write flush load dump".split()
)
PY_SAFE_MODULES = frozenset(
    "math cmath json re datetime time calendar collections itertools functools operator "
    "string textwrap random statistics decimal fractions hashlib base64 binascii uuid "
    "ipaddress pprint struct heapq bisect copy enum dataclasses typing zoneinfo secrets "
    "zlib unicodedata numbers array sys".split()
)
PY_DENY_ATTRS = frozenset(
    "os sys subprocess builtins importlib ctypes posix nt shutil pty socket modules loader "
    "spec f_globals f_locals f_builtins gi_frame cr_frame ag_frame tb_frame func_globals "
    "system popen spawn run call check_call check_output Popen getoutput getstatusoutput "
    "fdopen remove unlink rmdir rmtree rename chmod chown kill execv execve execl path "
    "meta_path path_hooks settrace setprofile addaudithook breakpointhook excepthook "
    "displayhook unraisablehook".split()
)
_PY_NODES_OK = (
    ast.Module, ast.Interactive, ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign,
    ast.Name, ast.Constant, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.List,
    ast.Tuple, ast.Set, ast.Dict, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp,
    ast.comprehension, ast.Subscript, ast.Slice, ast.Attribute, ast.Call, ast.keyword,
    ast.JoinedStr, ast.FormattedValue, ast.IfExp, ast.Lambda, ast.arguments, ast.arg,
    ast.For, ast.While, ast.If, ast.Break, ast.Continue, ast.Pass, ast.Import,
    ast.ImportFrom, ast.alias, ast.FunctionDef, ast.Return, ast.Starred, ast.Try,
    ast.ExceptHandler, ast.Raise, ast.Assert, ast.Delete, ast.Load, ast.Store, ast.Del,
    ast.operator, ast.unaryop, ast.cmpop, ast.boolop, ast.expr_context, ast.NamedExpr,
)


def check_python(code: str, *, repl: bool = False) -> LangResult:
    """Closed-world check of Python code (inline ``-c`` code or a REPL line/block)."""
    r = LangResult()
    stripped = code.strip()
    if stripped in ("exit()", "quit()", "exit", "quit"):
        r.exits = True
        return r
    tree = _py_parse(code, repl, r)
    if tree is None:
        return r
    for node in ast.walk(tree):
        _py_node(node, r)
    return r


def _py_node(node: ast.AST, r: LangResult) -> None:
    if not isinstance(node, _PY_NODES_OK):
        r.unsure(f"Python {type(node).__name__} is not checked")
    elif isinstance(node, ast.Name) and (node.id in PY_DENY_NAMES or node.id.startswith("_")):
        r.unsure(f"Python name {node.id} can run code")
    elif isinstance(node, ast.Attribute) and (
        node.attr.startswith("_") or node.attr in PY_DENY_ATTRS
    ):
        r.unsure(f"Python attribute {node.attr} can run code")
    elif isinstance(node, ast.Call):
        _py_call(node, r)
    elif isinstance(node, ast.Import):
        for a in node.names:
            if a.name.split(".")[0] not in PY_SAFE_MODULES:
                r.unsure(f"Python imports {a.name}")
    elif isinstance(node, ast.ImportFrom) and (
            (node.module or "").split(".")[0] not in PY_SAFE_MODULES or node.level):
        r.unsure(f"Python imports from {node.module}")


def _py_parse(code: str, repl: bool, r: LangResult) -> ast.AST | None:
    """The syntax tree of the code (an open block in a REPL is completed with ``pass``);
    None when it cannot be read (uncertain) or is an open block (decided when complete)."""
    if repl:
        try:
            compiled = codeop.compile_command(code, "<repl>", "single")
        except (SyntaxError, ValueError, OverflowError):
            r.unsure("Python that cannot be read")
            return None
        if compiled is None:
            r.incomplete = True
    try:
        return ast.parse(code if not r.incomplete else code + "\n    pass\n", mode="exec")
    except SyntaxError:
        if not r.incomplete:
            r.unsure("Python that cannot be read")
        return None


def _py_call(node: ast.Call, r: LangResult) -> None:
    """A call: a visible command is decided as a shell line; only harmless functions and
    methods are certain."""
    f = node.func
    _py_shell_call(node, r)
    if isinstance(f, ast.Name) and f.id not in PY_SAFE_CALLS:
        r.unsure(f"Python call {f.id}() is not known to be harmless")
    elif isinstance(f, ast.Attribute) and f.attr not in PY_SAFE_METHODS:
        r.unsure(f"Python call .{f.attr}() is not known to be harmless")
    elif not isinstance(f, ast.Name | ast.Attribute):
        r.unsure("Python call of a computed function")


_PY_SHELL_FUNCS = frozenset({"system", "popen", "getoutput", "getstatusoutput"})
_PY_ARGV_FUNCS = frozenset({"run", "call", "check_call", "check_output", "Popen", "spawnlp",
                            "execlp", "execvp"})


def _py_shell_call(node: ast.Call, r: LangResult) -> None:
    """A command visible in the code (``os.system('...')``, ``subprocess.run([...])``):
    decided as a shell line too, so a rule sees it (the call stays uncertain)."""
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
    if not node.args:
        return
    first = node.args[0]
    shell = any(k.arg == "shell" and isinstance(k.value, ast.Constant) and k.value.value
                for k in node.keywords)
    if isinstance(first, ast.Constant) and isinstance(first.value, str) and (
            name in _PY_SHELL_FUNCS or (name in _PY_ARGV_FUNCS and shell)):
        r.shell.append(first.value)
    elif name in _PY_ARGV_FUNCS and isinstance(first, ast.List | ast.Tuple) and all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in first.elts):
        r.shell.append(" ".join(shlex.quote(str(getattr(e, "value", ""))) for e in first.elts))
    elif name in ("spawnlp", "execlp") and all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.args[1:]):
        r.shell.append(" ".join(shlex.quote(str(getattr(e, "value", ""))) for e in node.args[2:]))


# --------------------------------------------------------------------------- other interpreters

_TRIVIAL_WORDS = {
    "perl": "print say my our local if else elsif unless for foreach while return sub "
    "length join split keys values sort reverse scalar uc lc sprintf printf int abs sqrt "
    "defined exists undef ref push pop shift unshift map grep last next",
    "ruby": "puts print p pp if else elsif end unless while for in do return def length "
    "size join split keys values sort reverse to_s to_i to_f upcase downcase each map "
    "select nil true false times upto",
    "node": "console log let const var if else for while return function length join split "
    "keys values sort reverse toString parseInt parseFloat Math JSON stringify parse map "
    "filter reduce forEach true false null undefined Object Array String Number Date now "
    "toUpperCase toLowerCase floor ceil round max min abs push pop of in",
    "php": "echo print if else elseif for foreach while return strlen implode explode "
    "count array sort strtoupper strtolower intval floatval json_encode json_decode "
    "var_dump print_r true false null as function",
    "lua": "print local if then else elseif end for in do while return function pairs "
    "ipairs tostring tonumber string format upper lower len sub math floor ceil max min "
    "table insert concat true false nil and or not",
    "tcl": "puts set expr if else elseif for foreach while return proc llength lindex "
    "string length toupper tolower incr append list",
    "bc": "scale ibase obase if else while for print quit define return sqrt length auto",
    "mongo": "db stats serverStatus getCollectionNames getCollectionInfos find findOne count "
    "countDocuments printjson print version isMaster hello getSiblingDB currentOp "
    "getIndexes dataSize totalSize storageSize limit sort pretty toArray length show dbs "
    "collections use it exit quit rs status conf printReplicationInfo getReplicationInfo "
    "aggregate distinct explain hostInfo buildInfo getUsers getRoles true false null "
    "ObjectId ISODate NumberLong Date",
}
_EXITS = {"perl": ("q", "quit", "exit"), "ruby": ("exit", "quit"), "node": (".exit",),
          "php": ("exit", "quit", "exit;"), "lua": ("os.exit()",), "tcl": ("exit",),
          "bc": ("quit",)}


def check_trivial(lang: str, code: str) -> LangResult:
    """Other interpreters: certain only for lines made of harmless words and literals."""
    r = LangResult()
    s = code.strip()
    if s in _EXITS.get(lang, ()):
        r.exits = True
        return r
    if not s:
        return r
    words = set(_TRIVIAL_WORDS.get(lang, "").split())
    if not words:
        r.unsure(f"{lang} code is not checked")
        return r
    if "`" in s or re.search(r"#\{|\$\{|@\{|\$\(|%x|\bqx\b|<<", s):
        r.unsure(f"{lang} code runs commands or interpolates code")
        return r
    body = re.sub(r"'(?:[^'\\]|\\.)*'", "''", s)
    body = re.sub(r'"(?:[^"\\$@#]|\\.)*"', '""', body)
    if re.search(r"[\"'$@]", re.sub(r"\$\w+|@\w+", "", body)):
        r.unsure(f"{lang} code that cannot be read")
        return r
    for w in re.findall(r"(?<![\w$@%.])[A-Za-z_]\w*", body):
        if w not in words:
            r.unsure(f"{lang} code uses {w}, which is not known to be harmless")
            break
    return r


# --------------------------------------------------------------------------- perl

PERL_WORDS = frozenset(
    "print printf say sprintf length substr index rindex uc lc ucfirst lcfirst join split "
    "reverse sort keys values each exists delete defined undef scalar push pop shift "
    "unshift splice map grep abs int sqrt sin cos atan2 exp log hex oct ord chr chomp chop "
    "time localtime gmtime die warn last next redo return my our local if elsif else unless "
    "while until for foreach and or not xor eq ne lt gt le ge cmp x pack unpack quotemeta "
    "pos lc uc STDIN STDOUT STDERR ARGV ARGVOUT ENV INC BEGIN END sum max min first uniq "
    "printf wantarray ref".split()
)
_PERL_QUOTE = re.compile(
    r"""(?P<kw>\b(?:s|tr|y)\b|\b(?:m|qr|q|qq|qw)\b)\s*(?P<d>[^\w\s])"""
)
_PAIRS = {"{": "}", "(": ")", "[": "]", "<": ">"}


def _perl_delimited(code: str, i: int, d: str) -> tuple[str, int]:
    """The body after delimiter ``d`` at ``code[i]``; returns (body, index after close)."""
    close = _PAIRS.get(d, d)
    depth, j = 0, i + 1
    while j < len(code):
        c = code[j]
        if c == "\\":
            j += 2
            continue
        if d in _PAIRS and c == d:
            depth += 1
        elif c == close:
            if depth == 0:
                return code[i + 1 : j], j + 1
            depth -= 1
        j += 1
    raise ValueError("unterminated")


def check_perl(code: str) -> LangResult:
    """Perl one-liners: certain only with harmless functions, regexes without code."""
    r = LangResult()
    scan = _PerlScan(code, r)
    try:
        if not scan.run():
            return r
    except ValueError:
        r.unsure("perl code that cannot be read")
        return r
    for w in " ".join(scan.out).split():
        if w not in PERL_WORDS and not w.isupper():
            r.unsure(f"perl {w} is not known to be harmless")
            break
    if "&" in code and re.search(r"&\s*[A-Za-z_]", code):
        r.unsure("perl calls a subroutine")
    return r


class _PerlScan:
    """One pass over Perl code: quoted bodies and regexes are checked for code and
    replaced by a blank in ``out``; words are kept (``out``) to be checked after."""

    def __init__(self, code: str, r: LangResult) -> None:
        self.code = code
        self.n = len(code)
        self.i = 0
        self.prev = ""  # what came before: "", "op", "kw", "id" or "q" (a quoted body)
        self.out: list[str] = []
        self.r = r

    def run(self) -> bool:
        """Scan it all; False when a construct decided the check (backquotes). Raises
        ValueError for an unterminated construct."""
        while self.i < self.n:
            if not self._step():
                return False
        return True

    def _step(self) -> bool:
        code, i = self.code, self.i
        c = code[i]
        m = _PERL_QUOTE.match(code, i)
        if m and (i == 0 or not (code[i - 1].isalnum() or code[i - 1] in "_$@%&")):
            self._quote_op(m)
        elif c == "/" and self.prev in ("", "op", "kw"):
            body, j = _perl_delimited(code, i, "/")
            if re.search(r"\(\?\??\{", body):
                self.r.unsure("perl regex runs code")
            self._quoted(_perl_flags(code, j)[1])
        elif c in "'\"":
            body, j = _perl_delimited(code, i, c)
            if c == '"' and re.search(r"@\{|\$\{\\|\$\{\s*\\", body):
                self.r.unsure("perl interpolates code")
            self._quoted(j)
        elif c == "`":
            self.r.unsure("perl backquotes run a command")
            return False
        elif c.isalpha() or c == "_":
            self._word()
        elif c in "$@%" and i + 1 < self.n and not (code[i + 1].isalnum() or
                                                    code[i + 1] in "_{:"):
            self.i += 2  # a punctuation variable: $/, $_, $0, @ARGV...
            self.prev = "id"
        else:
            self._other(c)
        return True

    def _other(self, c: str) -> None:
        if c in "0123456789" or c in ")]}":
            self.prev = "id"
        elif not c.isspace():
            self.prev = "op" if c not in "$@%&" else self.prev
        self.i += 1

    def _quoted(self, j: int) -> None:
        """A quoted body or regex ended before ``j``."""
        self.out.append(" ")
        self.i = j
        self.prev = "q"

    def _quote_op(self, m: re.Match[str]) -> None:
        """``s///``, ``tr///``, ``y///``, ``m//``, ``qr//``, ``q()``, ``qq{}``, ``qw<>``."""
        code = self.code
        kw, d = m.group("kw"), m.group("d")
        body, j = _perl_delimited(code, m.end() - 1, d)
        parts = [body]
        if kw in ("s", "tr", "y"):
            body2, j = self._replacement(j, d)
            parts.append(body2)
        f, j = _perl_flags(code, j)
        if kw == "s" and "e" in f:
            self.r.unsure("perl s///e runs the replacement as code")
        if kw in ("qq", "s", "m", "qr") and any(
                re.search(r"\(\?\??\{|@\{|\$\{\\", p) for p in parts):
            self.r.unsure("perl interpolates code")
        self._quoted(j)

    def _replacement(self, j: int, d: str) -> tuple[str, int]:
        """The second part of ``s{..}{..}`` (its own delimiters) or ``s/../../``."""
        code, n = self.code, self.n
        if d not in _PAIRS:
            return _perl_delimited(code, j - 1, d)
        k = j
        while k < n and code[k].isspace():
            k += 1
        if k >= n:
            raise ValueError("unterminated")
        return _perl_delimited(code, k, code[k])

    def _word(self) -> None:
        code, i = self.code, self.i
        m2 = re.match(r"[A-Za-z_]\w*(?:::\w+)*", code[i:])
        assert m2 is not None
        word = m2.group(0)
        sigil = code[i - 1] if i else ""
        if not sigil or sigil not in "$@%" or code[i - 2 : i] == "::":
            self.out.append(word)
        self.i += len(word)
        self.prev = "kw" if word in PERL_WORDS else "id"


def _perl_flags(code: str, j: int) -> tuple[str, int]:
    """The modifier letters after a quote-like operator at ``j``, and the index after."""
    m = re.match(r"[a-z]*", code[j:])
    f = m.group(0) if m else ""
    return f, j + len(f)


def check_shell_words(text: str) -> list[str]:
    """Split a command line the simple way (used for programs' own argv strings)."""
    try:
        return shlex.split(text)
    except ValueError:
        return []
