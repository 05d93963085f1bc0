"""API endpoints of the events app, mounted under /api/v1/ by minga/api.py."""

from ninja import Router

router = Router(tags=["events"])
