"""API endpoints of the notifications app, mounted under /api/v1/ by minga/api.py."""

from ninja import Router

router = Router(tags=["notifications"])
