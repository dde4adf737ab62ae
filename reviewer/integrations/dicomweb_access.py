"""What the DICOMweb proxy looks up on every request, kept in Django's cache between requests.

Every frame the viewer fetches passes the proxy's checks, and two of them read the database
each time: the reader's roles (their groups) and, for the blinding check, which series and
instances of the study are the app's own SRs (``dicomweb_identities.hidden_srs``: an image
series holding none has nothing to hide). Compiling those two ORM queries was most of the
proxy's own time per frame (1.55 ms in-process with SQLite, 0.87 without them), and as deployed
each is a PostgreSQL round trip, for answers that change a few times a day.

So both are kept in the configured cache (Redis in deployment, which every web process shares;
the demo's single process uses its memory), and one ``get_many`` reads both. Each entry carries
the *generation* it was read under, a random token kept beside it, and is used only while that
token is current. Any change to roles (a group added to or removed from a user, staff or
superuser flags, a group renamed or deleted) or to the app's SRs (written or deleted) replaces
the token, so the next request reads the database again: a role removed takes effect on the
reader's next request. The token is replaced when the change is saved and again when its
transaction commits, so an entry read from the database between the two (the old state) is
never used. The entries hold nothing that identifies a patient.

What is not kept: who the credentials belong to (the session or token is checked on every
request, so signing out or deactivating a user is immediate), and the blinding decision itself
(``selectors.reader_srs_hidden_from``, asked on every request that can touch an SR). The one
decision kept anywhere is the viewer nginx's, outside the app: its copy of the app's yes for the
frames of a series, per credential, for ``SPINEREVIEW_PIXEL_AUTH_TTL`` seconds
(``dicomweb_relay.pixel_grant``; docs/security.md). If the cache
cannot be reached, everything is read from the database, as before; a change saved while it
could not be reached is seen once the entries expire (``ENTRY_TTL_S``).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.cache import cache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save

from reviewer.models import StructuredReport
from reviewer.roles import Role, roles_of

logger = logging.getLogger(__name__)

ROLES_GENERATION = "dicomweb:roles-generation"
SRS_GENERATION = "dicomweb:srs-generation"
# bounds what a change made while the cache could not be reached (its renewal lost) leaves stale
ENTRY_TTL_S = 300
# a cache only this process sees (the demo's memory): a role changed by another process (a
# management command) cannot renew its generation, so its entries are read again this often
LOCAL_TTL_S = 10
# saving a user with only these fields changed does not change their roles (sign-in, password)
_ROLE_NEUTRAL_FIELDS = frozenset({"last_login", "password"})


@dataclass(frozen=True)
class StudySRs:
    """Series and SOP instance UIDs of the app's SRs (``StructuredReport``) in one study."""

    series: frozenset[str] = frozenset()
    sops: frozenset[str] = frozenset()

    def touched_by(self, series_uid: str, instance_uid: str | None) -> bool:
        """Whether a path into ``series_uid`` (and ``instance_uid``) can reach one of them."""
        return series_uid in self.series or (instance_uid is not None and instance_uid in self.sops)


def _roles_key(user_pk: object) -> str:
    return f"dicomweb:roles:{user_pk}"


def _srs_key(study_uid: str) -> str:
    return f"dicomweb:srs:{study_uid}"


def _study_srs_from_db(study_uid: str) -> StudySRs:
    rows = StructuredReport.objects.filter(study__study_uid=study_uid).values_list(
        "series_instance_uid", "sop_instance_uid"
    )
    return StudySRs(frozenset(r[0] for r in rows if r[0]), frozenset(r[1] for r in rows if r[1]))


def _current(found: dict[str, Any], key: str, generation: object) -> Any | None:
    """The value of ``key`` when it was stored under ``generation`` (else None)."""
    entry = found.get(key)
    if generation is None or not isinstance(entry, tuple) or len(entry) != 2 or entry[0] != generation:
        return None
    return entry[1]


def _generation(found: dict[str, Any], key: str) -> str | None:
    """The current token of ``key``; a fresh one (nothing stored under it yet) when it is
    missing, or None when another request set one first (the entry is then not stored)."""
    if (token := found.get(key)) is not None:
        return token
    token = secrets.token_hex(8)
    return token if cache.add(key, token, None) else None


def prime(user: Any, study_uid: str | None) -> StudySRs | None:
    """Prime ``user``'s roles for this request (``roles.roles_of`` then reads them from the user
    object) and return the SRs of ``study_uid`` (None without a study); from the cache when
    current, else from the database (and stored for the next request)."""
    if not getattr(user, "is_authenticated", False) or getattr(user, "pk", None) is None:
        return _study_srs_from_db(study_uid) if study_uid else None
    keys = [ROLES_GENERATION, SRS_GENERATION, _roles_key(user.pk)] + ([_srs_key(study_uid)] if study_uid else [])
    try:
        found = cache.get_many(keys)
    except Exception as exc:  # the cache is an optimisation: without it, ask the database
        logger.warning("DICOMweb proxy: cache unavailable (%s); reading roles and SRs from the database", exc)
        return _study_srs_from_db(study_uid) if study_uid else None
    to_store: dict[str, tuple[str, object]] = {}
    roles = _current(found, _roles_key(user.pk), found.get(ROLES_GENERATION))
    if roles is not None:
        user._spinereview_roles = frozenset(Role(r) for r in roles)
    else:
        generation = _generation(found, ROLES_GENERATION)  # read before the database
        fresh = roles_of(user)
        if generation is not None:
            to_store[_roles_key(user.pk)] = (generation, tuple(sorted(r.value for r in fresh)))
    srs: StudySRs | None = None
    if study_uid:
        srs = _current(found, _srs_key(study_uid), found.get(SRS_GENERATION))
        if srs is None:
            generation = _generation(found, SRS_GENERATION)
            srs = _study_srs_from_db(study_uid)
            if generation is not None:
                to_store[_srs_key(study_uid)] = (generation, srs)
    if to_store:
        try:
            cache.set_many(to_store, LOCAL_TTL_S if isinstance(caches["default"], LocMemCache) else ENTRY_TTL_S)
        except Exception as exc:
            logger.warning("DICOMweb proxy: cache unavailable (%s)", exc)
    return srs


def _renew(key: str) -> None:
    """A new generation for ``key`` now and again once the transaction commits (an entry read
    from the database before the commit saw the old state)."""

    def renew() -> None:
        try:
            cache.set(key, secrets.token_hex(8), None)
        except Exception as exc:
            # entries expire after ENTRY_TTL_S at most; while the cache is down, prime() reads the database
            logger.error("DICOMweb proxy: could not renew %s in the cache: %s", key, exc)

    renew()
    transaction.on_commit(renew)


def _groups_changed(sender: Any, action: str, **kwargs: Any) -> None:
    if action in ("post_add", "post_remove", "post_clear"):
        _renew(ROLES_GENERATION)


def _user_saved(sender: Any, update_fields: frozenset[str] | None = None, **kwargs: Any) -> None:
    if update_fields is None or not set(update_fields) <= _ROLE_NEUTRAL_FIELDS:
        _renew(ROLES_GENERATION)


def _group_changed(sender: Any, **kwargs: Any) -> None:
    _renew(ROLES_GENERATION)


def _sr_changed(sender: Any, **kwargs: Any) -> None:
    _renew(SRS_GENERATION)


def connect_signals() -> None:
    """Renew the generations on every change they depend on (called from ``ReviewerConfig.ready``,
    so every process that can change roles or SRs, web, worker or command, renews them)."""
    user_model = get_user_model()
    m2m_changed.connect(_groups_changed, sender=user_model.groups.through, dispatch_uid="dicomweb-access-groups")
    post_save.connect(_user_saved, sender=user_model, dispatch_uid="dicomweb-access-user")
    for signal in (post_save, post_delete):
        signal.connect(_group_changed, sender=Group, dispatch_uid=f"dicomweb-access-group-{signal is post_save}")
        signal.connect(_sr_changed, sender=StructuredReport, dispatch_uid=f"dicomweb-access-sr-{signal is post_save}")
