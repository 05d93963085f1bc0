"""Domain signals of the events calendar, sent after commit (the notifications issue listens).

Every signal is sent with `sender=Event` (or `Registration`) and keyword arguments only, once the
transaction that caused it has committed (services use `transaction.on_commit`), so nothing is
announced for a write that rolled back. Receivers get model instances as they were at commit
time; ids are included for receivers that enqueue Celery work.

| signal | kwargs |
| --- | --- |
| `event_scheduled` | event, event_id, actor_id |
| `event_changed` | event, event_id, actor_id, changed (list of field names), message, sequence_bumped; for one moved date of a series (`changed == ["occurrence"]`) also original_start and starts_at (its new start) |
| `event_cancelled` | event, event_id, actor_id, message, original_start (None: whole event) |
| `registration_created` | registration, registration_id, event_id, member_id, status, position |
| `registration_promoted` | registration, registration_id, event_id, member_id |
| `event_reminder_due` | delivery_id, registration_id, event_id, member_id, occurrence_start (aware UTC: when the occurrence starts, its new start if that date was moved), original_start (the occurrence's key), offset_minutes |

`event_reminder_due` may be sent again for the same `delivery_id` after a crash between commit
and send (at-least-once); receivers dedupe on `delivery_id`.
"""

from __future__ import annotations

from django.dispatch import Signal

event_scheduled = Signal()
event_changed = Signal()
event_cancelled = Signal()
registration_created = Signal()
registration_promoted = Signal()
event_reminder_due = Signal()
