"""The long reliability runs (`make soak`): outside tests/, so `make test` never collects them.

They reuse the suite's fixtures and the families' code in tests/reliability/ with bigger numbers,
and print the same `FAMILY: figure` lines.
"""

from tests.conftest import *  # noqa: F403 - the suite's fixtures (plan, redis_layer, ...)
from tests.conftest import (  # noqa: F401 - autouse; `*` skips _names
    _closed_breakers,
    _fresh_channel_layers,
    _one_gateway_database_thread,
)
