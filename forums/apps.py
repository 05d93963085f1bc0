from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ForumsConfig(AppConfig):
    name = "forums"
    verbose_name = _("Forums")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out
        from django.db.models.signals import post_delete, post_save

        from community.models import ApiToken, Membership, User

        user_logged_out.connect(_revoke_session, dispatch_uid="forums.revoke_session")
        post_save.connect(_revoke_deactivated, sender=User, dispatch_uid="forums.revoke_user")
        post_delete.connect(_revoke_deleted, sender=User, dispatch_uid="forums.revoke_deleted")
        post_save.connect(_revoke_token, sender=ApiToken, dispatch_uid="forums.revoke_token")
        post_save.connect(_access_changed, sender=Membership, dispatch_uid="forums.access_saved")
        post_delete.connect(
            _access_changed, sender=Membership, dispatch_uid="forums.access_deleted"
        )
        # What a room's sockets missed while their process's Redis subscriptions were lost,
        # replayed once they are back, and this process's presence entries written again.
        from notifications import bus

        from . import presence, replay

        bus.recover_with(replay.recover_rooms)
        bus.recover_with(presence.recover)


# Receivers that tell the gateway (forums.consumers) to close or re-check a member's sockets.
# The frames go to the member's own group, after commit; docs/events.md lists them.


def _publish_revoked(user_id: int, reason: str, credential: str | None) -> None:
    from notifications import bus

    bus.publish_on_commit(
        bus.user_group(user_id),
        {"type": "session.revoked", "reason": reason, "credential": credential},
    )


def _revoke_session(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Logging out closes the sockets of that session (other devices stay connected)."""
    from .frames import credential_fingerprint

    if user is None or not getattr(user, "pk", None):
        return
    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    # No session key (a token client "logging out"): nothing to single out, close them all.
    _publish_revoked(user.pk, "logged_out", credential_fingerprint(key) if key else None)


def _revoke_deactivated(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    """Deactivation closes every socket of the member; so does a new password (set_password()
    then save(), whichever page or command did it): every session's auth hash is stale, and the
    session that changed it got a new key, so no open socket's credential stands any more."""
    if created:
        return
    if not instance.is_active:
        _publish_revoked(instance.pk, "deactivated", None)
    elif getattr(instance, "_password", None) is not None:
        # AbstractBaseUser.save() clears `_password` only after post_save has run.
        _publish_revoked(instance.pk, "password_changed", None)


def _revoke_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    _publish_revoked(instance.pk, "deleted", None)


def _revoke_token(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    from .frames import credential_fingerprint

    if instance.revoked_at is not None:
        _publish_revoked(
            instance.member_id, "token_revoked", credential_fingerprint(instance.key_hash)
        )


def _access_changed(sender: Any, instance: Any, **kwargs: Any) -> None:
    from notifications import bus

    bus.publish_on_commit(bus.user_group(instance.member_id), {"type": "access.changed"})
