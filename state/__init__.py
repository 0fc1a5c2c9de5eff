"""Local state of the appliance shared by the gateway, the recorder tools and the player.

``state.reviews``: auditors' reviews of recorded sessions (signed, append-only).
"""
