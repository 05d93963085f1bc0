"""API endpoints of the forums app, mounted under /api/v1/ by minga/api.py."""

from ninja import Router

router = Router(tags=["forums"])
