"""The compiled parts of bastille: two scans of the masker in C, its escape-sequence
projection (``gateway/policy/_escapes.c``) and its digit-shape gate
(``gateway/policy/_shapes.c``); and SHA-256 with the x86 SHA extensions, two streams at
once, for the recorder (``common/_sha2x.c``). Everything else is in pyproject.toml.

The extensions are optional: where no C compiler or Python headers exist the install goes
on, the masker uses its pure-Python paths and the recorder hashlib (the same bytes,
slower; see docs/performance.md). ``BASTILLE_PURE_WHEEL=1`` leaves them out on purpose,
for a wheel that installs on any platform (the Ansible role builds its wheel on the controller,
which may not be the hosts' platform).
"""

import os

from setuptools import Extension, setup

PURE = os.environ.get("BASTILLE_PURE_WHEEL", "") in ("1", "true", "yes")

# (module, source): compiled alike, each optional
_EXTENSIONS = [
    ("gateway.policy._escapes", "gateway/policy/_escapes.c"),
    ("gateway.policy._shapes", "gateway/policy/_shapes.c"),
    ("common._sha2x", "common/_sha2x.c"),
]

setup(
    ext_modules=[]
    if PURE
    else [
        Extension(name, sources=[source], optional=True, extra_compile_args=["-O2"])
        for name, source in _EXTENSIONS
    ]
)
