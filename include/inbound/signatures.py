"""Signed requests for the drift webhook: the project's HMAC scheme and Grafana's native one.

Both are HMAC-SHA256 with the shared secret over the raw body as it arrived (not a re-serialisation
of it), compared in constant time (:func:`hmac.compare_digest`).

**The project's signature** (:func:`sign`, :func:`verify`). A sender signs every request::

    X-Modelops-Timestamp: <unix seconds>
    X-Modelops-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}." + raw body)>

:func:`verify` accepts it only if the MAC matches (constant-time comparison) and the timestamp is
within ``tolerance_s`` (default 300 s) of now, either way, so a captured request cannot be replayed
later. In a shell::

    ts=$(date +%s)
    sig=$(printf '%s.%s' "$ts" "$body" | openssl dgst -sha256 -hmac "$secret" -hex | sed 's/^.* //')

**Grafana's signature** (:func:`grafana_sign`, :func:`verify_grafana`), sent by a webhook contact point
with an "HMAC Signature" secret (Grafana 12, ``hmacConfig``; grafana/alerting ``http/hmac.go``)::

    <signature header>: <hex HMAC-SHA256(secret, raw body)>                        no timestamp header set
    <timestamp header>: <unix seconds>
    <signature header>: <hex HMAC-SHA256(secret, f"{timestamp}:" + raw body)>       a timestamp header set

Bare lower-case hex, no ``sha256=`` prefix. The signature header is ``X-Grafana-Alerting-Signature``
unless the contact point names another (Grafana's UI placeholder and code constant; a doc comment in
the same code says ``X-Grafana-Alert-Signature``, so both are accepted by default). The timestamp
header has no default name: it is sent only when the contact point names one. Grafana enforces no
replay window, so :func:`verify_grafana` checks the timestamp against ``tolerance_s`` like
:func:`verify` does; without a timestamp header nothing dates a request, and a captured one verifies
for as long as the secret is unchanged.

The two schemes share the secret but cannot stand in for each other: the project's MAC covers
``"<digits>." + body``, Grafana's ``"<digits>:" + body`` or ``body``. A MAC of one form presented as
another would need a body that starts with digits (or ``"<digits>:"`` to start with ``"<digits>."``),
and a payload, a JSON object, never does.
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
    return _fresh(TIMESTAMP_HEADER, timestamp, now, tolerance_s)


def _fresh(header: str, timestamp: str, now: float | None, tolerance_s: int) -> int:
    """``timestamp`` (unix seconds, already matched by ``_TIMESTAMP``) as an int, unless it is more than
    ``tolerance_s`` off ``now``: :class:`SignatureError` ``stale`` naming ``header``."""
    ts = int(timestamp)
    skew = (time.time() if now is None else now) - ts
    if abs(skew) > tolerance_s:
        raise SignatureError("stale", f"{header} is {abs(int(skew))} s off the server clock "
                                      f"(tolerance {tolerance_s} s)")
    return ts


# --- Grafana's native signature ----------------------------------------------------------------------

GRAFANA_SIGNATURE_HEADERS = ("X-Grafana-Alerting-Signature", "X-Grafana-Alert-Signature")
"""The signature header names accepted by default: Grafana's UI / docs name, then the one in its code's comment."""
GRAFANA_TIMESTAMP_SEPARATOR = ":"

_HEX_MAC = re.compile(r"^[0-9a-fA-F]{64}$")


def grafana_sign(secret: str | bytes, body: bytes, timestamp: int | str | None = None) -> str:
    """Grafana's signature of ``body``: hex HMAC-SHA256 over the raw body, or over ``f"{timestamp}:" + body``
    when the contact point sends a timestamp (unix seconds). As ``HMACRoundTripper.sign`` in grafana/alerting."""
    message = body if timestamp is None else f"{timestamp}{GRAFANA_TIMESTAMP_SEPARATOR}".encode() + body
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def grafana_signed_headers(
    secret: str | bytes, body: bytes, *, signature_header: str = GRAFANA_SIGNATURE_HEADERS[0],
    timestamp_header: str | None = None, timestamp: int | None = None,
) -> dict[str, str]:
    """The headers a Grafana contact point sends with ``body``: the signature, and the timestamp (now unless
    ``timestamp`` is given) when ``timestamp_header`` is set."""
    if timestamp_header is None:
        return {signature_header: grafana_sign(secret, body)}
    ts = int(time.time()) if timestamp is None else timestamp
    return {timestamp_header: str(ts), signature_header: grafana_sign(secret, body, ts)}


def verify_grafana(
    secret: str | bytes,
    signature: str | None,
    body: bytes,
    *,
    signature_header: str = GRAFANA_SIGNATURE_HEADERS[0],
    timestamp_header: str | None = None,
    timestamp: str | None = None,
    now: float | None = None,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> int | None:
    """Check Grafana's signature of ``body``; returns the signed timestamp, or None without a timestamp header.

    ``signature`` is the value of ``signature_header``. With ``timestamp_header`` set (the name the
    receiver expects), ``timestamp`` is that header's value: it is **required**, signed
    (``"<timestamp>:" + body``) and must be within ``tolerance_s`` of now. Without it the MAC covers the
    body alone and ``timestamp`` is ignored: nothing dates the request.

    Raises :class:`SignatureError` (``missing``, ``malformed``, ``mismatch``, ``stale``) naming the
    header, never its value; ``ValueError`` for an empty secret. The MAC is compared in constant time,
    and before the timestamp's age, so only an authentic request is told it is stale.
    """
    if not _key(secret):
        raise ValueError("the webhook secret is empty")
    signature, timestamp = (signature or "").strip(), (timestamp or "").strip()
    missing = [h for h, v in ((timestamp_header, timestamp), (signature_header, signature)) if h and not v]
    if missing:
        raise SignatureError("missing", f"missing header {' and '.join(missing)}")
    if timestamp_header and not _TIMESTAMP.match(timestamp):
        raise SignatureError("malformed", f"{timestamp_header} must be unix seconds (an integer)")
    if not _HEX_MAC.match(signature):
        raise SignatureError("malformed", f"{signature_header} must be 64 hex digits (HMAC-SHA256, no prefix)")
    expected = grafana_sign(secret, body, timestamp if timestamp_header else None)
    if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
        covers = (f"{timestamp_header} and the body" if timestamp_header else
                  "the body (no timestamp header is configured here, so the signature must cover the body alone)")
        raise SignatureError("mismatch", f"{signature_header} does not match {covers}")
    return _fresh(timestamp_header, timestamp, now, tolerance_s) if timestamp_header else None
