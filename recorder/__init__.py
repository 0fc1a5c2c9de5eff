"""bastille recorder: versioned, compressed, tamper-evident session recordings.

This package is a library used by the gateway and the player; it imports neither.
"""
