"""Playback controls shared by the terminal replay and the desktop view.

:class:`PlaybackScreen` holds what both screens do the same way: the speed steps,
seeking, jumping to either end, idle skipping and stepping to the next or previous
moment of a kind (typed line, timeline event, search hit...). The screens draw:
they implement :meth:`PlaybackScreen._goto` and :meth:`PlaybackScreen._update_status`.
"""

from __future__ import annotations

import bisect

from player.archive import Archive, SessionData
from player.session_actions import SessionScreen

SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
STEP_EPSILON = 1e-3  # seconds: a moment this close to the position is the position


class PlaybackScreen(SessionScreen):
    """A session screen with a play position (see the module docstring)."""

    data: SessionData | None
    position: float

    def __init__(self, archive: Archive, session_id: str) -> None:
        super().__init__(archive, session_id)
        self.playing = False
        self.speed_index = SPEEDS.index(1.0)
        self.skip_idle = True

    @property
    def speed(self) -> float:
        return SPEEDS[self.speed_index]

    def _goto(self, t: float) -> None:
        raise NotImplementedError

    def _update_status(self) -> None:
        raise NotImplementedError

    def action_seek(self, delta: float) -> None:
        self._goto(self.position + float(delta))

    def action_jump(self, where: int) -> None:
        if self.data is not None:
            self._goto(self.data.duration if where else 0.0)

    def action_speed(self, step: int) -> None:
        self.speed_index = min(max(self.speed_index + int(step), 0), len(SPEEDS) - 1)
        self._update_status()

    def action_toggle_idle(self) -> None:
        self.skip_idle = not self.skip_idle
        self._update_status()

    def action_event(self, direction: int) -> None:
        if self.data is not None:
            self._step(sorted(m.time for m in self.data.marks), int(direction),
                       "timeline event")

    def _step(self, times: list[float], direction: int, what: str) -> None:
        """Pause at the next (``direction`` > 0) or previous moment of ``times``, or
        tell that there is none."""
        times = sorted(times)
        if not times:
            self.notify(f"no {what} in this session", severity="warning")
            return
        if direction > 0:
            i = bisect.bisect_right(times, self.position + STEP_EPSILON)
            target = times[i] if i < len(times) else None
        else:
            i = bisect.bisect_left(times, self.position - STEP_EPSILON)
            target = times[i - 1] if i > 0 else None
        if target is None:
            self.notify(f"no {'next' if direction > 0 else 'previous'} {what}")
            return
        self.playing = False
        self._goto(target)
