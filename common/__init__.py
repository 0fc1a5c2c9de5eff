"""Leaf helpers shared by every bastille package (gateway, recorder, player); imports
nothing of them."""
