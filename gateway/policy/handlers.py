"""Running a catalogue program: its own handler (``tools*.py``) when the catalogue names
one (``kind = "special"``), else the generic handling of its kind (``programs.run``).
"""

from __future__ import annotations

from gateway.policy import programs, tools, tools_dev, tools_interactive, tools_wrappers
from gateway.policy.catalogue import Program
from gateway.policy.ctx import Ctx
from gateway.policy.tools_common import Handler
from gateway.policy.values import Field


def _all_handlers() -> dict[str, Handler]:
    out: dict[str, Handler] = {}
    for module in (tools, tools_dev, tools_interactive, tools_wrappers):
        for name, fn in module.HANDLERS.items():
            if name in out:  # pragma: no cover - a programming error, caught by any test
                raise RuntimeError(f"two handlers named {name!r}")
            out[name] = fn
    return out


HANDLERS = _all_handlers()


def run(prog: Program, name: str, args: list[Field], ctx: Ctx) -> None:
    """Run ``name args`` (a command of the catalogue program ``prog``)."""
    if prog.kind != "special":
        programs.run(prog, name, args, ctx)
        return
    fn = HANDLERS.get(prog.handler)
    if fn is None:
        ctx.an.unsure(f"{name} is not checked")
        programs.record(name, args, ctx)
        return
    fn(prog, name, args, ctx)
