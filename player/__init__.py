"""The session player (Textual): find, replay and search recorded sessions.

Entry point: :func:`player.app.run_player`. Textual is imported only in this package;
it imports ``recorder``, never ``gateway``. See ``docs/player.md``.
"""
