"""What kind of Bakaláři credential EduRPG stored in ``"User"."bakalariToken"`` (no I/O, nothing verified).

EduRPG's login (``app/lib/auth.ts``) stores the student's *access* token: a JWT that lives one hour. A background
sync needs the *refresh* token (which lives about a month and rotates), and EduRPG stores that one once
``bakalariResult.refreshToken`` replaces ``bakalariResult.accessToken`` there. Both kinds can be met, so the token
is classified: a JWT (three base64url parts whose middle one is a JSON object) is an access token, and its ``exp``
is read without verifying the signature (the sync only needs to know whether sending it is worth a request);
anything else is a refresh token. Nothing here ever puts the token itself in a message.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from dataclasses import dataclass

ACCESS = "access"
REFRESH = "refresh"
# An access token this close to its ``exp`` is treated as expired: the reads would outlive it.
EXPIRY_MARGIN_SECONDS = 30.0


@dataclass(frozen=True)
class StoredToken:
    kind: str  # ACCESS or REFRESH
    expires_at: float | None = None  # an access token's ``exp`` (Unix seconds), when it has one
    account_id: str | None = None  # an access token's ``bak:UserId`` / ``sub`` claim, when it has one

    def expired(self, now: float | None = None) -> bool:
        if self.kind != ACCESS or self.expires_at is None:
            return False
        return self.expires_at - EXPIRY_MARGIN_SECONDS <= (time.time() if now is None else now)

    def expired_for(self, now: float | None = None) -> str:
        """How long ago it expired, for a person (``"3 h 12 min"``); never the token."""
        seconds = max(0, int((time.time() if now is None else now) - (self.expires_at or 0)))
        days, rest = divmod(seconds, 86_400)
        hours, rest = divmod(rest, 3_600)
        minutes = rest // 60
        if days:
            return f"{days} d {hours} h"
        if hours:
            return f"{hours} h {minutes} min"
        return f"{minutes} min" if minutes else f"{seconds} s"


def _b64url_json(part: str) -> object:
    padded = part + "=" * (-len(part) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def _unix_seconds(value: object) -> float | None:
    """An ``exp`` claim as Unix seconds: a finite number, else None (a claim of 400 digits, ``Infinity`` or
    ``NaN`` is no time: converting it would raise, or a later subtraction would)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) and abs(value) >= 10**15:
        return None  # far past any date a float keeps to the second
    seconds = float(value)
    return seconds if math.isfinite(seconds) else None


def classify(token: str | None) -> StoredToken:
    """An access token (JWT, ``exp`` read unverified) or a refresh token (anything else, including nothing)."""
    parts = (token or "").strip().split(".")
    if len(parts) != 3 or not all(parts[:2]):
        return StoredToken(REFRESH)
    try:
        header, payload = _b64url_json(parts[0]), _b64url_json(parts[1])
    except (ValueError, UnicodeError, binascii.Error):
        return StoredToken(REFRESH)
    if not isinstance(header, dict) or not isinstance(payload, dict):
        return StoredToken(REFRESH)
    expires_at = _unix_seconds(payload.get("exp"))
    account = payload.get("bak:UserId") or payload.get("sub")
    return StoredToken(ACCESS, expires_at, str(account) if account else None)
