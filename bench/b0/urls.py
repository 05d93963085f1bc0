"""No HTTP pages: the peer is measured on websockets only."""

urlpatterns: list[object] = []
