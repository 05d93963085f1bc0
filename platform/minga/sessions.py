"""Django's database sessions with the session read by one statement written once.

Every signed-in page request and every browser websocket connect loads its session. Django's
`db` engine reads it through `Session.objects.get(...)`, a queryset compiled on every load;
the connect's profile put that compile at a third of its session work (docs/performance.md,
"H3 connects: the browser's path"). This engine answers exactly as Django's (the row if it
has not expired, else nothing and the key dropped), with the statement written once
(minga.rows). Saving, creating, deleting and clearing expired sessions stay Django's.
`SESSION_ENGINE = "minga.sessions"`.
"""

from __future__ import annotations

import functools
from typing import Any

from django.contrib.sessions.backends import db
from django.db import connection
from django.utils import timezone

from minga import rows


@functools.cache
def _read_statement() -> str:
    from django.contrib.sessions.models import Session

    return (
        # Names from the model's _meta, values as parameters.
        f"SELECT {rows.column(Session, 'session_data')} FROM {rows.table(Session)} "  # noqa: S608
        f"WHERE {rows.column(Session, 'session_key')} = %s "
        f"AND {rows.column(Session, 'expire_date')} > %s"
    )


class SessionStore(db.SessionStore):
    def _get_session_from_db(self) -> Any:
        key = self.session_key
        if key is None:  # Django's get() finds nothing for a missing or malformed key
            self._session_key = None
            return None
        model = self.model
        now = rows.param(model, "expire_date", timezone.now())
        with connection.cursor() as cursor:
            cursor.execute(_read_statement(), [key, now])
            row = cursor.fetchone()
        if row is None:
            self._session_key = None
            return None
        return model(session_key=key, session_data=row[0])  # what `load` reads of it
