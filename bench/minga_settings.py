"""Minga's production settings (minga.settings, environment-driven) with one benchmark change.

Flood control allows 10 messages per member per room every 10 seconds; the load generator's
senders post far faster than a person. The limit is raised, not removed: the same count query
still runs for every message, so its cost stays in the figures.
"""

from minga.settings import *  # noqa: F403

FORUMS_FLOOD_LIMIT = (1_000_000, 10)
