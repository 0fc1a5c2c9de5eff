"""The one compiled part of bastille: the masker's escape-sequence projection in C
(``gateway/policy/_escapes.c``). Everything else is in pyproject.toml.

The extension is optional: where no C compiler or Python headers exist the install goes
on, and the masker uses its pure-Python projection (the same bytes, slower; see
docs/performance.md). ``BASTILLE_PURE_WHEEL=1`` leaves it out on purpose, for a wheel
that installs on any platform (the Ansible role builds its wheel on the controller,
which may not be the hosts' platform).
"""

import os

from setuptools import Extension, setup

PURE = os.environ.get("BASTILLE_PURE_WHEEL", "") in ("1", "true", "yes")

setup(
    ext_modules=[]
    if PURE
    else [
        Extension(
            "gateway.policy._escapes",
            sources=["gateway/policy/_escapes.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
