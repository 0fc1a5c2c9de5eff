"""The session player (Textual): find, replay, review and export recorded sessions.

Entry point: :func:`player.app.run_player`. Textual is imported only in this package;
it imports ``recorder`` and ``state``, never ``gateway``. The modules without Textual
(``archive``, ``cursor``, ``sources``, ``details``, ``render``, ``marks``, ``fmt``,
``evidence``) are the model; the screens talk through messages. See ``docs/player.md``.
"""
