"""Signed requests for the drift webhook: HMAC-SHA256 over the timestamp and the raw body.

**Signature.** A sender signs every request with a shared secret::

    X-Modelops-Timestamp: <unix seconds>
    X-Modelops-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}." + raw body)>

:func:`verify` accepts it only if the MAC matches (constant-time comparison) and the timestamp is
within ``tolerance_s`` (default 300 s) of now, either way, so a captured request cannot be replayed
later. In a shell::

    ts=$(date +%s)
    sig=$(printf '%s.%s' "$ts" "$body" | openssl dgst -sha256 -hmac "$secret" -hex | sed 's/^.* //')
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

TIMESTAMP_HEADER = "X-Modelops-Timestamp"
SIGNATURE_HEADER = "X-Modelops-Signature"
SIGNATURE_SCHEME = "sha256"
DEFAULT_TOLERANCE_S = 300

_SIGNATURE = re.compile(r"^sha256=([0-9a-fA-F]{64})$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")


# --- signatures ------------------------------------------------------------------------------------


class SignatureError(ValueError):
    """A request's signature headers are missing, malformed, stale or wrong; ``reason`` says which."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # "missing", "malformed", "stale" or "mismatch"


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """The ``X-Modelops-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(_key(secret), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_SCHEME}={mac.hexdigest()}"


def signed_headers(secret: str | bytes, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """Both signature headers for ``body``, timestamped now unless ``timestamp`` is given."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(secret, ts, body)}


def verify(
    secret: str | bytes,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: float | None = None,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> int:
    """Check a request's signature headers against ``body``; returns the timestamp.

    Raises :class:`SignatureError` for a missing or malformed header, a signature that does not
    match (compared in constant time), or an authentic request older or newer than ``tolerance_s``.
    """
    if not _key(secret):
        raise ValueError("the webhook secret is empty")
    missing = [h for h, v in ((TIMESTAMP_HEADER, timestamp), (SIGNATURE_HEADER, signature)) if not v]
    if missing:
        raise SignatureError("missing", f"missing header {' and '.join(missing)}")
    timestamp, signature = timestamp.strip(), signature.strip()
    if not _TIMESTAMP.match(timestamp):
        raise SignatureError("malformed", f"{TIMESTAMP_HEADER} must be unix seconds (an integer)")
    if not _SIGNATURE.match(signature):
        raise SignatureError("malformed", f"{SIGNATURE_HEADER} must be 'sha256=' followed by 64 hex digits")
    expected = sign(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
        raise SignatureError("mismatch", f"{SIGNATURE_HEADER} does not match the body and timestamp")
    ts = int(timestamp)
    skew = (time.time() if now is None else now) - ts
    if abs(skew) > tolerance_s:
        raise SignatureError("stale", f"{TIMESTAMP_HEADER} is {abs(int(skew))} s off the server clock "
                                      f"(tolerance {tolerance_s} s)")
    return ts
