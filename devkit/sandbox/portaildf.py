"""Portail DF (Cerema) API sandbox: the source of the ZLV "user kinds" sync.

It speaks the real API's two authentication schemes (v1: DRF ``TokenAuthentication``; v2: simplejwt) and its
``GET /api/utilisateurs?email=...`` lookup with Django REST Framework pagination, so the sync's client can be
written against it and pointed at ``https://portaildf.cerema.fr/api`` unchanged.

Lookup semantics (a documented choice; the real filter is not public): ``email`` is stripped of surrounding
whitespace (django-filter's ``CharField`` does that) and matched as a case-insensitive *substring*
(``email__icontains``). An empty ``email`` is ignored, as django-filter ignores empty values, and the answer
lists every account. So a lookup can return records whose email is not the one asked for: the client must keep
only the records whose email equals the looked-up address (trimmed, case-insensitive). The sample data exercises
that on purpose, see ``generate_portaildf_accounts``.

Query strings are decoded as Django decodes them: an unencoded ``+`` is a space, so ``zoë+test@exemple.fr`` must
be sent as ``zo%C3%AB%2Btest%40exemple.fr`` (``httpx``'s ``params=`` does that).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import secrets
import time
import uuid
from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from devkit.sandbox.sample_data import FIRST_NAMES, LAST_NAMES
from devkit.sandbox.server import Knobs, SandboxApp, dumps
from sync_pipelines.defs.user_kinds.mapping import (  # the product's mapping: the stand-in never restates it
    KINDS,
    NOT_FOUND,
    STRUCTURES_DISAGREE,
    kind_for,
    normalise_email,
)

DEFAULT_USERNAME = "zlv-sync"
DEFAULT_PASSWORD = "portaildf-password"
PAGE_SIZE = 50
AUTH_VERSIONS = ("v1", "v2", "both")

# Expected outcomes that are not a kind: the sync must leave ``users.kind`` unchanged for these. NOT_FOUND
# (no record has exactly this email, other records may contain it) and STRUCTURES_DISAGREE (two or more records,
# one per structure, have exactly this email, case-insensitively, and their flags give different kinds) are the
# product's own names, imported above.
NO_EMAIL = "no_email"  # the ZLV email is NULL or blank: nothing to look up
INVALID = "invalid"  # a matching record has a missing or non-boolean flag (only after a fault hook)
OUTCOMES = (NOT_FOUND, STRUCTURES_DISAGREE, NO_EMAIL, INVALID)
# The shapes of one page of a lookup: Django REST framework's (``count``, ``next``, ``previous``, ``results``),
# or ``results`` alone, as some deployments answer.
PAGE_SHAPES = ("drf", "results_only")

# The flags behind each kind: the inverse of the product's mapping (``kind_for``), not a second copy of it.
FLAGS_BY_KIND: dict[str, tuple[bool, bool]] = {
    kind_for(exterieur, gestionnaire): (exterieur, gestionnaire)
    for exterieur in (True, False)
    for gestionnaire in (False, True)
}
# How common each (exterieur, gestionnaire) combination is among found users.
FLAG_WEIGHTS: dict[tuple[bool, bool], float] = {
    (False, True): 0.40,
    (False, False): 0.25,
    (True, False): 0.20,
    (True, True): 0.15,
}
DOMAINS = ("exemple.fr", "ddt-nord.gouv.fr", "agglo-rennes.fr", "mairie-lyon.fr", "cerema.fr")
PLUS_TAGS = ("test", "zlv", "dev")
# Prefixes that make another account's email contain a user's email ("jo" + "anna..." = "joanna...").
CONTAINER_PREFIXES = ("jo", "old.", "ext-", "marie-")
SAMPLE_EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)
ADMIN_EMAIL = "admin@zerologementvacant.beta.gouv.fr"  # the system user a ZLV migration inserts


def record_kind(record: dict[str, Any]) -> str:
    """The kind one Portail DF record maps to, or ``INVALID`` when a flag is missing or not a boolean."""
    exterieur, gestionnaire = record.get("exterieur"), record.get("gestionnaire")
    if isinstance(exterieur, bool) and isinstance(gestionnaire, bool):
        return kind_for(exterieur, gestionnaire)
    return INVALID


# -- sample data ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleZlvUser:
    """A row of ZLV's ``users`` table, as far as the user-kind sync is concerned."""

    id: str  # uuid4 text
    email: (
        str | None
    )  # as typed in ZLV: may have spaces, capitals, ``+tag`` or accents; None or blank for a few
    deleted_at: datetime | None
    kind: str | None  # the current value of ``users.kind`` before any sync


@dataclass
class SamplePortailDf:
    """ZLV users, the Portail DF accounts behind them, and what a correct sync makes of each user.

    ``expected[user_id]`` is one of ``KINDS`` (the value the sync must write) or one of ``OUTCOMES``
    (``NOT_FOUND``, ``STRUCTURES_DISAGREE``, ``NO_EMAIL``: leave ``kind`` unchanged and count the user as
    skipped). It follows one rule, ``expected_outcomes``: keep the lookup's records whose email equals the ZLV
    email trimmed and case-insensitively; none is NOT_FOUND, one or several whose flags agree give their kind,
    several that disagree are STRUCTURES_DISAGREE, and one with a missing flag makes the answer INVALID.
    ``deleted_at`` plays no part: whether deleted users are synced is the sync's policy (the seed syncs them).

    ``cases`` names the user ids built for each situation: ``found``, ``not_found``, ``near_miss`` (one
    record returned, but for a longer email), ``contained`` (two records returned, one exact; the other is
    listed first), ``several_structures`` (two or three records with the same email, one per structure, whose
    flags agree), ``duplicate`` (two records with the same email whose flags disagree), ``no_email``, ``deleted``,
    ``already_right``, ``stale`` and ``unset`` (current kind vs expected kind), and one per flag combination:
    ``prestataire``, ``gestionnaire``, ``prestataire, gestionnaire``, ``aucun``.
    """

    users: list[SampleZlvUser]
    accounts: list[dict[str, Any]]
    expected: dict[str, str]
    cases: dict[str, list[str]] = field(default_factory=dict)

    def kinds_after_sync(self) -> dict[str, str | None]:
        """``users.kind`` for every user after a correct, complete sync."""
        return {
            user.id: self.expected[user.id] if self.expected[user.id] in KINDS else user.kind
            for user in self.users
        }

    def changes(self) -> dict[str, str]:
        """The writes a sync that skips unchanged rows must make: user id -> new kind."""
        return {
            user.id: self.expected[user.id]
            for user in self.users
            if self.expected[user.id] in KINDS and self.expected[user.id] != user.kind
        }

    def user(self, user_id: str) -> SampleZlvUser:
        return next(user for user in self.users if user.id == user_id)


def _pick(rng: random.Random, options: Sequence[Any]) -> Any:
    """``rng.choice`` at a third of the cost: 100,000-user samples are built at every sandbox start."""
    return options[int(rng.random() * len(options))]


def _between(rng: random.Random, low: int, high: int) -> int:
    return low + int(rng.random() * (high - low))


def _weighted(rng: random.Random, weights: dict[Any, float]) -> Any:
    options = list(weights)
    draw = rng.random() * sum(weights.values())
    for option in options:
        draw -= weights[option]
        if draw < 0:
            return option
    return options[-1]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def generate_zlv_users(count: int, seed: int = 7) -> list[SampleZlvUser]:
    """``count`` ZLV users; the same ``(count, seed)`` always gives the same users.

    Emails come in the shapes real data has: most in lower case, some in capitals or title case, some with
    surrounding spaces, some with a ``+tag``, accented names throughout (one guaranteed ``zoë.…+test@…``), one
    empty ``''`` (ZLV's ``email`` is ``NOT NULL`` and unique, so at most one can be empty) and, when
    ``count >= 20``, one of spaces only and ZLV's system admin (``ADMIN_EMAIL``, made by a ZLV migration). Every
    email is distinct as stored. About 5% are deleted. ``kind`` is NULL for about 55%, otherwise one of the four
    kinds, which Portail DF may or may not agree with.
    """
    rng = random.Random(seed)
    forced = ["unicode_plus", "spaces", "upper", "none"] + (["blank", "admin"] if count >= 20 else [])
    forced = forced[:count]
    weights = {"plain": 0.70, "upper": 0.08, "title": 0.06, "spaces": 0.06, "plus": 0.08, "none": 0.02}
    shapes = forced + [
        # ZLV has no NULL email and a single empty one: a drawn "none" becomes a plain address.
        "plain" if (shape := _weighted(rng, weights)) == "none" else shape
        for _ in range(count - len(forced))
    ]
    rng.shuffle(shapes)
    users = []
    for number, shape in enumerate(shapes, start=1):
        first = "Zoë" if shape == "unicode_plus" else _pick(rng, FIRST_NAMES)
        last = _pick(rng, LAST_NAMES)
        domain = _pick(rng, DOMAINS)
        local = f"{first}.{last}.{number}"
        email: str | None
        if shape == "none":
            email = ""
        elif shape == "admin":
            email = ADMIN_EMAIL
        elif shape == "blank":
            email = "   "
        elif shape == "upper":
            email = f"{local}@{domain}".upper()
        elif shape == "title":
            email = f"{local}@{domain.capitalize()}"
        elif shape == "spaces":
            email = _pick(rng, [" ", "  ", ""]) + f"{local.lower()}@{domain}" + _pick(rng, [" ", "  "])
        elif shape == "plus":
            email = f"{local.lower()}+{_pick(rng, PLUS_TAGS)}@{domain}"
        elif shape == "unicode_plus":
            email = f"{local.lower()}+test@{domain}"
        else:
            email = f"{local.lower()}@{domain}"
        deleted = rng.random() < 0.05
        deleted_at = SAMPLE_EPOCH + timedelta(minutes=_between(rng, 0, 500_000)) if deleted else None
        kind = _pick(rng, KINDS) if rng.random() >= 0.55 else None
        user_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if shape == "admin":
            deleted_at, kind = None, None
        users.append(SampleZlvUser(id=user_id, email=email, deleted_at=deleted_at, kind=kind))
    return users


PARIS_WINTER = timezone(timedelta(hours=1))


def _account(rng: random.Random, email: str, flags: tuple[bool, bool]) -> dict[str, Any]:
    """One record in the shapes real answers have: ``structure`` as an id or as an object (``{id_structure}``
    or ``{id}``), dates in UTC or with a ``+01:00`` offset, and now and then a key the sync does not read."""
    attached = SAMPLE_EPOCH - timedelta(minutes=_between(rng, 0, 2_000_000))
    expires = attached + timedelta(days=_between(rng, 365, 1500)) if rng.random() < 0.3 else None
    number = _between(rng, 1, 2000)
    shape = rng.random()
    structure: Any = number if shape < 0.6 else {"id_structure": number} if shape < 0.85 else {"id": number}

    def moment(value: datetime) -> str:
        return value.astimezone(PARIS_WINTER).isoformat() if shape >= 0.6 else _iso(value)

    record = {
        "id_user": 0,  # assigned once every record exists
        "email": email,
        "structure": structure,
        "gestionnaire": flags[1],
        "exterieur": flags[0],
        "cgu_valide": moment(attached + timedelta(days=_between(rng, 0, 30))) if rng.random() < 0.9 else None,
        "date_rattachement": moment(attached),
        "date_expiration": moment(expires) if expires else None,
        "groupe": _pick(rng, [None, 173, 174, 201, 350]),
    }
    if shape >= 0.6:
        record["str_mandataire"] = _pick(rng, [None, "", "DDT 59"])
    return record


def _other_flags(rng: random.Random, flags: tuple[bool, bool]) -> tuple[bool, bool]:
    return _pick(rng, [combo for combo in FLAG_WEIGHTS if combo != flags])


def _build_accounts(
    users: list[SampleZlvUser], seed: int
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    rng = random.Random(seed * 1_000_003 + 0xDF)
    order = [user for user in users if user.email is not None and user.email.strip()]
    rng.shuffle(order)
    forced: list[tuple[str, tuple[bool, bool] | None]] = [
        ("found", (True, False)),
        ("found", (False, True)),
        ("found", (True, True)),
        ("found", (False, False)),
        ("not_found", None),
        ("duplicate", None),
        ("contained", None),
        ("near_miss", None),
        ("several_structures", None),
    ]
    weights = {
        "found": 0.83,
        "not_found": 0.10,
        "several_structures": 0.02,
        "duplicate": 0.015,
        "contained": 0.015,
        "near_miss": 0.02,
    }
    accounts: list[dict[str, Any]] = []
    contained_pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    cases: dict[str, list[str]] = {name: [] for name in weights}
    for position, user in enumerate(order):
        assert user.email is not None
        email = normalise_email(user.email)
        if position < len(forced):
            case, flags = forced[position]
        else:
            case, flags = _weighted(rng, weights), None
        if flags is None:
            if user.kind is not None and rng.random() < 0.6:
                flags = FLAGS_BY_KIND[user.kind]
            else:
                flags = _weighted(rng, FLAG_WEIGHTS)
        cases[case].append(user.id)
        if case == "found":
            accounts.append(_account(rng, email, flags))
        elif case == "several_structures":
            accounts += [_account(rng, email, flags) for _ in range(_between(rng, 2, 4))]
        elif case == "duplicate":
            accounts.append(_account(rng, email, flags))
            accounts.append(_account(rng, email, _other_flags(rng, flags)))
        elif case == "contained":
            exact = _account(rng, email, flags)
            container = _account(rng, _pick(rng, CONTAINER_PREFIXES) + email, _other_flags(rng, flags))
            accounts += [exact, container]
            contained_pairs.append((exact, container))
        elif case == "near_miss":
            accounts.append(_account(rng, _pick(rng, CONTAINER_PREFIXES) + email, flags))
    # Accounts of Portail DF users who have no ZLV account.
    for number in range(1, len(users) // 10 + 1):
        accounts.append(_account(rng, f"agent.{number}@{_pick(rng, DOMAINS)}", _weighted(rng, FLAG_WEIGHTS)))
    ids = list(range(101, 101 + len(accounts)))
    rng.shuffle(ids)
    for account, id_user in zip(accounts, ids, strict=True):
        account["id_user"] = id_user
    for exact, container in contained_pairs:
        # The longer email is listed first, so "take results[0]" picks the wrong record.
        if container["id_user"] > exact["id_user"]:
            container["id_user"], exact["id_user"] = exact["id_user"], container["id_user"]
    accounts.sort(key=lambda account: account["id_user"])
    return accounts, cases


def generate_portaildf_accounts(users: list[SampleZlvUser], seed: int = 7) -> list[dict[str, Any]]:
    """The Portail DF ``utilisateurs`` records behind ``users``, sorted by ``id_user``.

    About 85% of the users with an email have exactly one record (stored trimmed and in lower case), with all four
    (exterieur, gestionnaire) combinations present; about 10% have none; about 2% are near misses (no record of
    their own, but one whose email contains theirs, e.g. ``joanna…`` for ``anna…``, so the lookup returns one
    wrong record); about 1.5% are ``contained`` (their record plus a longer email containing it, listed first, with
    other flags: count 2, exactly one exact match); about 2% are ``several_structures`` (two or three records with
    their very email, one per structure, with the same flags: their kind); about 1.5% are ``duplicate`` (two
    records with their very email and different flags: count 2, STRUCTURES_DISAGREE). Another
    ``len(users) // 10`` accounts belong to nobody in ZLV. With nine or more users with an email, every one of
    these situations occurs at least once.
    """
    return _build_accounts(users, seed)[0]


def expected_outcomes(users: Iterable[SampleZlvUser], accounts: Iterable[dict[str, Any]]) -> dict[str, str]:
    """What a correct sync makes of each user, by the rule documented on ``SamplePortailDf``.

    Pass ``handle.state()["accounts"]`` after a fault hook to get the expectations for the changed server.
    """
    by_email: dict[str, list[dict[str, Any]]] = {}
    for account in accounts:
        email = account.get("email")
        if isinstance(email, str):
            by_email.setdefault(normalise_email(email), []).append(account)
    outcomes = {}
    for user in users:
        if user.email is None or not user.email.strip():
            outcomes[user.id] = NO_EMAIL
            continue
        matches = by_email.get(normalise_email(user.email), [])
        kinds = {record_kind(match) for match in matches}
        if not matches:
            outcomes[user.id] = NOT_FOUND
        elif INVALID in kinds:
            outcomes[user.id] = INVALID
        elif len(kinds) > 1:
            outcomes[user.id] = STRUCTURES_DISAGREE
        else:
            outcomes[user.id] = kinds.pop()
    return outcomes


def generate_portaildf_sample(count: int, seed: int = 7) -> SamplePortailDf:
    """ZLV users, their Portail DF accounts and the expected outcomes, all from ``(count, seed)``."""
    users = generate_zlv_users(count, seed)
    accounts, cases = _build_accounts(users, seed)
    expected = expected_outcomes(users, accounts)
    cases["no_email"] = [user.id for user in users if expected[user.id] == NO_EMAIL]
    cases["deleted"] = [user.id for user in users if user.deleted_at is not None]
    for kind in KINDS:
        cases[kind] = [user.id for user in users if expected[user.id] == kind]
    cases["already_right"] = [
        user.id for user in users if expected[user.id] in KINDS and user.kind == expected[user.id]
    ]
    cases["stale"] = [
        user.id
        for user in users
        if expected[user.id] in KINDS and user.kind is not None and user.kind != expected[user.id]
    ]
    cases["unset"] = [user.id for user in users if expected[user.id] in KINDS and user.kind is None]
    return SamplePortailDf(users=users, accounts=accounts, expected=expected, cases=cases)


# -- email search -------------------------------------------------------------------------------------------------


def _email_key(email: Any) -> str | None:
    return normalise_email(email) if isinstance(email, str) else None


def _order_key(record: dict[str, Any]) -> tuple[int, Any]:
    id_user = record.get("id_user")
    return (0, id_user) if isinstance(id_user, int) else (1, str(id_user))


_MAX_CHAR = "\U0010ffff"


class _EmailIndex:
    """Case-insensitive substring search over the accounts' emails without scanning them all.

    For a needle with exactly one ``@`` and a stored email with exactly one ``@``, "needle in email" means the
    email's local part ends with the needle's and its domain starts with the needle's. So each domain keeps its
    reversed local parts sorted, and a lookup is a bisection per matching domain. Stored emails with no or several
    ``@`` are few and scanned; needles without exactly one ``@`` fall back to a full scan (slow, but no sync sends
    those).
    """

    def __init__(self, accounts: Iterable[dict[str, Any]]) -> None:
        self.ordered: list[dict[str, Any]] = sorted(accounts, key=_order_key)
        self.by_email: dict[str, list[dict[str, Any]]] = {}
        self._domains: dict[str, tuple[list[str], list[str]]] = {}
        self._irregular: list[str] = []
        self._domain_cache: dict[str, list[str]] = {}
        for record in self.ordered:
            key = _email_key(record.get("email"))
            if key is not None:
                self.by_email.setdefault(key, []).append(record)
        grouped: dict[str, list[tuple[str, str]]] = {}
        for key in self.by_email:
            if key.count("@") == 1:
                local, domain = key.split("@")
                grouped.setdefault(domain, []).append((local[::-1], key))
            else:
                self._irregular.append(key)
        for domain, entries in grouped.items():
            entries.sort()
            self._domains[domain] = (
                [reversed_local for reversed_local, _ in entries],
                [key for _, key in entries],
            )

    def add(self, record: dict[str, Any]) -> None:
        insort(self.ordered, record, key=_order_key)
        key = _email_key(record.get("email"))
        if key is None:
            return
        if key in self.by_email:
            insort(self.by_email[key], record, key=_order_key)
            return
        self.by_email[key] = [record]
        if key.count("@") != 1:
            self._irregular.append(key)
            return
        local, domain = key.split("@")
        if domain not in self._domains:
            self._domains[domain] = ([], [])
            self._domain_cache.clear()
        reversed_locals, keys = self._domains[domain]
        position = bisect_left(reversed_locals, local[::-1])
        reversed_locals.insert(position, local[::-1])
        keys.insert(position, key)

    def _domains_starting_with(self, prefix: str) -> list[str]:
        domains = self._domain_cache.get(prefix)
        if domains is None:
            if len(self._domain_cache) > 10_000:
                self._domain_cache.clear()
            domains = [domain for domain in self._domains if domain.startswith(prefix)]
            self._domain_cache[prefix] = domains
        return domains

    def matching_keys(self, needle: str) -> list[str]:
        if needle.count("@") != 1:
            return [key for key in self.by_email if needle in key]
        local, domain = needle.split("@")
        reversed_local = local[::-1]
        keys: list[str] = []
        for candidate in self._domains_starting_with(domain):
            reversed_locals, domain_keys = self._domains[candidate]
            low = bisect_left(reversed_locals, reversed_local)
            high = bisect_left(reversed_locals, reversed_local + _MAX_CHAR, low)
            keys.extend(domain_keys[low:high])
        keys.extend(key for key in self._irregular if needle in key)
        return keys

    def search(self, needle: str) -> list[dict[str, Any]]:
        keys = self.matching_keys(needle)
        if len(keys) == 1:
            return self.by_email[keys[0]]
        records = [record for key in keys for record in self.by_email[key]]
        records.sort(key=_order_key)
        return records


# -- the server -----------------------------------------------------------------------------------------------------

NOT_PROVIDED = {"detail": "Authentication credentials were not provided."}
FIELD_REQUIRED = ["This field is required."]
DJANGO_NOT_FOUND_HTML = (
    '<!doctype html><html lang="en"><head><title>Not Found</title></head><body><h1>Not Found</h1>'
    "<p>The requested resource was not found on this server.</p></body></html>"
)
HTML_PAGES = {
    200: "<!DOCTYPE html><html><head><title>Portail DF - Maintenance</title></head><body><h1>Portail des "
    "donn\u00e9es fonci\u00e8res</h1><p>Le service est en maintenance. Merci de r\u00e9essayer plus tard.</p>"
    "</body></html>",
    502: "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>"
    "<hr><center>nginx</center></body></html>",
}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=dumps(data), status=status, content_type="application/json", headers=headers)


class PortailDfSandbox(SandboxApp):
    """The Portail DF API as the user-kind sync sees it: login (v1 and/or v2) and ``utilisateurs`` lookups.

    ``auth_version`` is ``"v1"``, ``"v2"`` or ``"both"``; the endpoints of a version that is off answer 404
    and its tokens are not recognised, as on a server that only has the other one.
    """

    system = "portaildf"

    def __init__(
        self,
        accounts: Iterable[dict[str, Any]],
        *,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        auth_version: str = "v2",
        access_ttl_seconds: float = 300.0,
        refresh_ttl_seconds: float = 86_400.0,
        page_shape: str = "drf",
        knobs: Knobs | None = None,
    ) -> None:
        self._check_auth_version(auth_version)
        self._check_page_shape(page_shape)
        self.page_shape = page_shape
        self.username = username
        self.password = password
        self.auth_version = auth_version
        self.access_ttl_seconds = access_ttl_seconds
        self.refresh_ttl_seconds = refresh_ttl_seconds
        self.sample: SamplePortailDf | None = None
        self.auth_calls: Counter[str] = Counter()
        self.auth_failures: Counter[str] = Counter()
        self._index = _EmailIndex(dict(account) for account in accounts)
        self._html_faults: dict[str, int] = {}
        # Emails whose lookup answers its first page again and again, always linking a next page.
        self._endless_pages: set[str] = set()
        self.emails_asked: list[str] = []  # each lookup's ``email`` as the client sent it, for tests
        self._secret = secrets.token_bytes(32)
        self._v1_token: str | None = None
        self._access_tokens: dict[str, float] = {}
        self._refresh_tokens: dict[str, float] = {}
        super().__init__(knobs)

    @classmethod
    def from_sample(
        cls,
        size: int,
        seed: int = 7,
        knobs: Knobs | None = None,
        auth_version: str = "v2",
        **options: Any,
    ) -> PortailDfSandbox:
        """A server holding the accounts of ``generate_portaildf_sample(size, seed)``, kept in ``.sample``."""
        sample = generate_portaildf_sample(size, seed)
        sandbox = cls(sample.accounts, knobs=knobs, auth_version=auth_version, **options)
        sandbox.sample = sample
        return sandbox

    @staticmethod
    def _check_auth_version(auth_version: str) -> None:
        if auth_version not in AUTH_VERSIONS:
            raise ValueError(f"auth_version must be one of {AUTH_VERSIONS}, not {auth_version!r}")

    @staticmethod
    def _check_page_shape(page_shape: str) -> None:
        if page_shape not in PAGE_SHAPES:
            raise ValueError(f"page_shape must be one of {PAGE_SHAPES}, not {page_shape!r}")

    @property
    def v1_enabled(self) -> bool:
        return self.auth_version in ("v1", "both")

    @property
    def v2_enabled(self) -> bool:
        return self.auth_version in ("v2", "both")

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/api-token-auth/", self._token_v1)
        router.add_post("/api/token/", self._token_v2)
        router.add_post("/api/token/refresh/", self._token_refresh)
        router.add_get("/api/utilisateurs", self._utilisateurs)
        router.add_get("/api/utilisateurs/", self._utilisateurs)

    def find_accounts(self, email: str) -> list[dict[str, Any]]:
        """The records ``GET /api/utilisateurs?email=<email>`` returns, in order (all of them when blank)."""
        needle = normalise_email(email)
        return self._index.search(needle) if needle else self._index.ordered

    # -- state ----------------------------------------------------------------------------------------------
    def state_snapshot(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "auth_version": self.auth_version,
            "page_shape": self.page_shape,
            "accounts": [dict(record) for record in self._index.ordered],
            "account_count": len(self._index.ordered),
            "auth_calls": {name: self.auth_calls[name] for name in ("token_v1", "token_v2", "refresh")},
            "auth_failures": {name: self.auth_failures[name] for name in ("token_v1", "token_v2", "refresh")},
            "html_for_email": dict(self._html_faults),
        }

    def apply_state_change(self, change: dict[str, Any]) -> None:
        """Actions: ``set_record_fields`` (``email``, ``fields``, optional ``drop``: field names to remove),
        ``html_for_email`` (``email``, optional ``status``: 200 or 502), ``clear_html_for_email``,
        ``endless_pages_for_email`` (``email``: its lookup's every page is the first, with a ``next`` link),
        ``add_account`` (record fields, directly or under ``account``), ``remove_account`` (``email``),
        ``expire_access_tokens``, ``expire_refresh_tokens``, ``revoke_tokens`` (every token, v1 included),
        ``set_password`` (``password``), ``set_auth_version`` (``auth_version``), ``set_page_shape``
        (``page_shape``: ``drf`` or ``results_only``)."""
        action = change.get("action")
        if action == "set_record_fields":
            fields, drop = dict(change.get("fields", {})), list(change.get("drop", []))
            for record in self._records_for(change["email"]):
                for name in drop:
                    record.pop(name, None)
                record.update(fields)
            if {"email", "id_user"} & {*fields, *drop}:
                self._index = _EmailIndex(self._index.ordered)
        elif action == "html_for_email":
            status = int(change.get("status", 200))
            if status not in HTML_PAGES:
                raise ValueError(f"html_for_email status must be one of {sorted(HTML_PAGES)}")
            self._html_faults[normalise_email(change["email"])] = status
        elif action == "endless_pages_for_email":
            self._endless_pages.add(normalise_email(change["email"]))
        elif action == "clear_html_for_email":
            self._html_faults.clear()
        elif action == "add_account":
            given = change.get("account") or {key: value for key, value in change.items() if key != "action"}
            if not isinstance(given.get("email"), str):
                raise ValueError("add_account needs an email")
            next_id = max(
                (r["id_user"] for r in self._index.ordered if isinstance(r.get("id_user"), int)), default=100
            )
            record: dict[str, Any] = {
                "id_user": next_id + 1,
                "email": given["email"],
                "structure": 1,
                "gestionnaire": False,
                "exterieur": False,
                "cgu_valide": None,
                "date_rattachement": None,
                "date_expiration": None,
                "groupe": None,
            }
            record.update(given)
            self._index.add(record)
        elif action == "remove_account":
            self._records_for(change["email"])
            key = normalise_email(change["email"])
            self._index = _EmailIndex(r for r in self._index.ordered if _email_key(r.get("email")) != key)
        elif action == "expire_access_tokens":
            self._access_tokens = dict.fromkeys(self._access_tokens, 0.0)
        elif action == "expire_refresh_tokens":
            self._refresh_tokens = dict.fromkeys(self._refresh_tokens, 0.0)
        elif action == "revoke_tokens":
            self._v1_token = None
            self._access_tokens.clear()
            self._refresh_tokens.clear()
        elif action == "set_password":
            self.password = str(change["password"])
        elif action == "set_auth_version":
            self._check_auth_version(change["auth_version"])
            self.auth_version = change["auth_version"]
        elif action == "set_page_shape":
            self._check_page_shape(change["page_shape"])
            self.page_shape = change["page_shape"]
        else:
            raise ValueError(f"unknown Portail DF sandbox action: {action!r}")

    def _records_for(self, email: str) -> list[dict[str, Any]]:
        records = self._index.by_email.get(normalise_email(email))
        if not records:
            raise KeyError(f"no Portail DF account has the email {email!r}")
        return records

    # -- authentication ------------------------------------------------------------------------------------
    async def _credentials(self, request: web.Request) -> dict[str, Any] | web.Response:
        """The login body as DRF parses it: JSON, urlencoded or multipart."""
        if not request.body_exists:  # read already (by a fault knob) or not, the body is there
            return {}
        content_type = request.content_type
        if content_type == "application/json":
            try:
                data = json.loads(await request.text())
            except ValueError as error:
                return _json({"detail": f"JSON parse error - {error}"}, status=400)
            if not isinstance(data, dict):
                kind = type(data).__name__
                return _json(
                    {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {kind}."]}, 400
                )
            return data
        if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            return {name: value for name, value in form.items() if isinstance(value, str)}
        return _json({"detail": f'Unsupported media type "{content_type}" in request.'}, status=415)

    @staticmethod
    def _missing_fields(data: dict[str, Any], names: Iterable[str]) -> dict[str, list[str]]:
        return {name: FIELD_REQUIRED for name in names if data.get(name) in (None, "")}

    def _jwt(self, token_type: str, ttl: float) -> tuple[str, float]:
        now = time.time()
        expires = now + ttl
        header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
        payload = {
            "token_type": token_type,
            "exp": int(expires),
            "iat": int(now),
            "jti": secrets.token_hex(16),
            "user_id": 1,
        }
        body = _b64url(json.dumps(payload, separators=(",", ":")).encode())
        signature = _b64url(hmac.new(self._secret, f"{header}.{body}".encode(), hashlib.sha256).digest())
        return f"{header}.{body}.{signature}", expires

    def _new_access(self) -> str:
        access, expires = self._jwt("access", self.access_ttl_seconds)
        self._access_tokens[access] = expires
        return access

    async def _token_v1(self, request: web.Request) -> web.Response:
        if not self.v1_enabled:
            return web.Response(status=404, text=DJANGO_NOT_FOUND_HTML, content_type="text/html")
        self.auth_calls["token_v1"] += 1
        data = await self._credentials(request)
        if isinstance(data, web.Response):
            self.auth_failures["token_v1"] += 1
            return data
        missing = self._missing_fields(data, ("username", "password"))
        if missing:
            self.auth_failures["token_v1"] += 1
            return _json(missing, status=400)
        if data["username"] != self.username or data["password"] != self.password:
            self.auth_failures["token_v1"] += 1
            return _json({"non_field_errors": ["Unable to log in with provided credentials."]}, status=400)
        if self._v1_token is None:  # DRF's Token.objects.get_or_create: one token per user, reused
            self._v1_token = secrets.token_hex(20)
        return _json({"token": self._v1_token})

    async def _token_v2(self, request: web.Request) -> web.Response:
        if not self.v2_enabled:
            return web.Response(status=404, text=DJANGO_NOT_FOUND_HTML, content_type="text/html")
        self.auth_calls["token_v2"] += 1
        data = await self._credentials(request)
        if isinstance(data, web.Response):
            self.auth_failures["token_v2"] += 1
            return data
        missing = self._missing_fields(data, ("username", "password"))
        if missing:
            self.auth_failures["token_v2"] += 1
            return _json(missing, status=400)
        if data["username"] != self.username or data["password"] != self.password:
            self.auth_failures["token_v2"] += 1
            return _json({"detail": "No active account found with the given credentials"}, status=401)
        refresh, expires = self._jwt("refresh", self.refresh_ttl_seconds)
        self._refresh_tokens[refresh] = expires
        return _json({"refresh": refresh, "access": self._new_access()})

    async def _token_refresh(self, request: web.Request) -> web.Response:
        if not self.v2_enabled:
            return web.Response(status=404, text=DJANGO_NOT_FOUND_HTML, content_type="text/html")
        self.auth_calls["refresh"] += 1
        data = await self._credentials(request)
        if isinstance(data, web.Response):
            self.auth_failures["refresh"] += 1
            return data
        missing = self._missing_fields(data, ("refresh",))
        if missing:
            self.auth_failures["refresh"] += 1
            return _json(missing, status=400)
        expires = self._refresh_tokens.get(data["refresh"])
        if expires is None or expires <= time.time():
            self.auth_failures["refresh"] += 1
            message = "Token is invalid" if expires is None else "Token is expired"
            return _json({"detail": message, "code": "token_not_valid"}, status=401)
        return _json({"access": self._new_access()})

    def _not_authenticated(self) -> web.Response:
        challenge = 'Bearer realm="api"' if self.v2_enabled else "Token"
        return _json(NOT_PROVIDED, status=401, headers={"WWW-Authenticate": challenge})

    def _authenticate(self, request: web.Request) -> web.Response | None:
        """None when the request carries a valid token, else DRF's or simplejwt's 401 answer."""
        header = request.headers.get("Authorization")
        if not header:
            return self._not_authenticated()
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme == "Token" and self.v1_enabled:
            if not token:
                return _json(
                    {"detail": "Invalid token header. No credentials provided."},
                    401,
                    {"WWW-Authenticate": "Token"},
                )
            if token != self._v1_token:
                return _json({"detail": "Invalid token."}, status=401, headers={"WWW-Authenticate": "Token"})
            return None
        if scheme == "Bearer" and self.v2_enabled:
            challenge = {"WWW-Authenticate": 'Bearer realm="api"'}
            if not token or " " in token:
                detail = "Authorization header must contain two space-delimited values"
                return _json(
                    {"detail": detail, "code": "bad_authorization_header"}, status=401, headers=challenge
                )
            expires = self._access_tokens.get(token)
            if expires is not None and expires > time.time():
                return None
            if expires is not None:
                message = "Token is expired"
            elif token in self._refresh_tokens:
                message = "Token has wrong type"
            else:
                message = "Token is invalid"
            body = {
                "detail": "Given token not valid for any token type",
                "code": "token_not_valid",
                "messages": [{"token_class": "AccessToken", "token_type": "access", "message": message}],
            }
            return _json(body, status=401, headers=challenge)
        return self._not_authenticated()

    # -- lookups -----------------------------------------------------------------------------------------------
    async def _utilisateurs(self, request: web.Request) -> web.Response:
        query = request.query
        email = query.get("email", "")
        status = self._html_faults.get(normalise_email(email)) if self._html_faults else None
        if status is not None:
            return web.Response(status=status, text=HTML_PAGES[status], content_type="text/html")
        denied = self._authenticate(request)
        if denied is not None:
            return denied
        self.emails_asked.append(email)
        try:
            page = int(query.get("page", "1"))
        except ValueError:
            page = 0
        records = self.find_accounts(email)
        if normalise_email(email) in self._endless_pages:
            next_page = str(request.url.update_query(page=max(page, 1) + 1))
            return _json({"count": None, "next": next_page, "previous": None, "results": records[:PAGE_SIZE]})
        count = len(records)
        start = (page - 1) * PAGE_SIZE
        if page < 1 or (page > 1 and start >= count):
            return _json({"detail": "Invalid page."}, status=404)
        if self.page_shape == "results_only":
            return _json({"results": records[start : start + PAGE_SIZE]})
        next_url = str(request.url.update_query(page=page + 1)) if start + PAGE_SIZE < count else None
        if page == 1:
            previous_url = None
        elif page == 2:
            previous_url = str(request.url.without_query_params("page"))
        else:
            previous_url = str(request.url.update_query(page=page - 1))
        return _json(
            {
                "count": count,
                "next": next_url,
                "previous": previous_url,
                "results": records[start : start + PAGE_SIZE],
            }
        )
