"""Who may call the drift webhook: the request's credentials, by scheme, decided without Airflow.

Three schemes, each checked against a secret the receiver holds (:class:`AuthConfig`):

| scheme | sender | credentials | replay protection |
|---|---|---|---|
| ``modelops_hmac`` | the project's senders (Evidently jobs, custom monitors) | ``X-Modelops-Timestamp`` + ``X-Modelops-Signature: sha256=<hex>`` (:func:`include.inbound.signatures.verify`) | the signed timestamp, within the tolerance |
| ``grafana_hmac`` | a Grafana webhook contact point with an HMAC secret | ``X-Grafana-Alerting-Signature`` (or another configured name): hex HMAC of the body, or of ``"<timestamp>:" + body`` with the configured timestamp header (:func:`include.inbound.signatures.verify_grafana`) | with a timestamp header configured: required and within the tolerance; without: none |
| ``bearer`` | Alertmanager ``webhook_configs[].http_config.authorization`` (or anything that sends a token) | ``Authorization: Bearer <token>`` (:func:`verify_bearer`) | none: the token is the same in every request |

:func:`authenticate` looks at which schemes' headers a request carries and checks **every** one of
them: a request passes when all the credentials it presents are right, and is refused
(:class:`AuthError`, naming the scheme) when any is wrong, malformed, stale, or of a scheme this
receiver holds no secret for. A request with no credentials at all is refused naming the accepted
schemes. Secrets and presented values are never put in a message.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from include.inbound.signatures import (
    DEFAULT_TOLERANCE_S,
    GRAFANA_SIGNATURE_HEADERS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    verify,
    verify_grafana,
)

MODELOPS_HMAC = "modelops_hmac"
GRAFANA_HMAC = "grafana_hmac"
BEARER = "bearer"
SCHEMES = (MODELOPS_HMAC, GRAFANA_HMAC, BEARER)
AUTHORIZATION_HEADER = "Authorization"

HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
"""An HTTP field name (RFC 9110 ``token``)."""
BEARER_TOKEN = re.compile(r"^[\x21-\x7e]+$")
"""A bearer token this receiver accepts: printable ASCII, no spaces (RFC 6750's b64token and more)."""


class AuthError(ValueError):
    """A request's credentials are missing, malformed, wrong, stale or of a scheme not configured here.

    ``scheme`` is the scheme whose credentials failed (None when the request carries none), ``reason``
    one of ``missing``, ``malformed``, ``mismatch``, ``stale``, ``not_configured``, and ``accepted`` the
    schemes this receiver accepts. The message names headers and schemes, never a secret or a value.
    """

    def __init__(self, scheme: str | None, reason: str, message: str, *, accepted: tuple[str, ...] = ()) -> None:
        super().__init__(f"{scheme}: {message}" if scheme else message)
        self.scheme = scheme
        self.reason = reason
        self.accepted = accepted


@dataclass(frozen=True)
class AuthConfig:
    """The receiver's secrets and header names.

    ``hmac_secret`` keys both HMAC schemes (``modelops_hmac`` and ``grafana_hmac``); ``bearer_token`` is
    the ``bearer`` scheme's token. A scheme without its secret is not accepted; an empty
    ``grafana_signature_headers`` turns ``grafana_hmac`` off. ``grafana_timestamp_header``, when set, makes
    Grafana's timestamp required and checked against ``tolerance_s`` (seconds). Neither secret appears
    in ``repr``. Valid names and distinct secrets are the caller's to check (the plugin's settings do).
    """

    hmac_secret: str | None = field(default=None, repr=False)
    bearer_token: str | None = field(default=None, repr=False)
    grafana_signature_headers: tuple[str, ...] = GRAFANA_SIGNATURE_HEADERS
    grafana_timestamp_header: str | None = None
    tolerance_s: int = DEFAULT_TOLERANCE_S

    @property
    def accepted(self) -> tuple[str, ...]:
        """The schemes this configuration accepts, in the order they are checked."""
        return tuple(s for s, on in ((MODELOPS_HMAC, bool(self.hmac_secret)),
                                     (GRAFANA_HMAC, bool(self.hmac_secret and self.grafana_signature_headers)),
                                     (BEARER, bool(self.bearer_token))) if on)

    def headers_of(self, scheme: str) -> tuple[str, ...]:
        """The request headers that carry ``scheme``'s credentials."""
        if scheme == MODELOPS_HMAC:
            return (TIMESTAMP_HEADER, SIGNATURE_HEADER)
        if scheme == GRAFANA_HMAC:
            ts = (self.grafana_timestamp_header,) if self.grafana_timestamp_header else ()
            return (*self.grafana_signature_headers, *ts)
        if scheme == BEARER:
            return (AUTHORIZATION_HEADER,)
        raise ValueError(f"unknown scheme {scheme!r}; known: {', '.join(SCHEMES)}")

    def describe(self, scheme: str) -> str:
        """How a sender presents ``scheme``, for error messages and documentation (names only)."""
        if scheme == MODELOPS_HMAC:
            return f"{MODELOPS_HMAC} (headers {TIMESTAMP_HEADER} and {SIGNATURE_HEADER}: sha256=<hex>)"
        if scheme == GRAFANA_HMAC:
            names = " or ".join(self.grafana_signature_headers)
            ts = f" with {self.grafana_timestamp_header}: <unix seconds>" if self.grafana_timestamp_header else ""
            return f"{GRAFANA_HMAC} (header {names}: <hex>{ts})"
        if scheme == BEARER:
            return f"{BEARER} (header {AUTHORIZATION_HEADER}: Bearer <token>)"
        raise ValueError(f"unknown scheme {scheme!r}; known: {', '.join(SCHEMES)}")


@dataclass(frozen=True)
class Authenticated:
    """A request whose credentials all verified: ``schemes`` in checking order, ``timestamp`` the signed
    unix seconds of the first scheme that signs one (None when none does)."""

    schemes: tuple[str, ...]
    timestamp: int | None = None

    @property
    def scheme(self) -> str:
        """The schemes as recorded: ``grafana_hmac``, ``bearer``, ``modelops_hmac``, or joined by ``+``."""
        return "+".join(self.schemes)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


def verify_bearer(token: str, authorization: str | None) -> None:
    """Check an ``Authorization`` header value against the bearer ``token``.

    The scheme name is case-insensitive (``Bearer``, ``bearer``), one or more spaces follow it. The
    token is compared with :func:`hmac.compare_digest` over the SHA-256 digests of both, so neither its
    content nor its length shows in the time taken. Raises :class:`AuthError` (scheme ``bearer``):
    ``missing``, ``malformed`` (not ``Bearer <token>``: Basic, a bare token, …) or ``mismatch``; the
    header's value is never quoted, as a sender may have put its secret in the wrong place.
    ``ValueError`` for an empty ``token``.
    """
    if not token:
        raise ValueError("the bearer token is empty")
    if not authorization or not authorization.strip():
        raise AuthError(BEARER, "missing", f"missing header {AUTHORIZATION_HEADER}")
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        raise AuthError(BEARER, "malformed", f"{AUTHORIZATION_HEADER} must be 'Bearer <token>'")
    if not hmac.compare_digest(_digest(token), _digest(credentials)):
        raise AuthError(BEARER, "mismatch", f"the token in {AUTHORIZATION_HEADER} does not match")


def _collect(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Every value of every header, by lower-case name (Starlette's ``Headers.items()`` repeats a repeated one)."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, list[str]] = {}
    for name, value in items:
        out.setdefault(name.lower(), []).append(value)
    return out


def _one(got: dict[str, list[str]], scheme: str, name: str | None) -> str | None:
    """The single value of header ``name`` (None when absent or ``name`` is None); a repeated one is malformed."""
    values = got.get(name.lower(), []) if name else []
    if len(values) > 1:
        raise AuthError(scheme, "malformed", f"header {name} appears {len(values)} times")
    return values[0] if values else None


def presented(config: AuthConfig, headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """The schemes whose headers the request carries (any of them, valid or not), in checking order."""
    got = _collect(headers)
    return tuple(s for s in SCHEMES if any(h.lower() in got for h in config.headers_of(s)))


def authenticate(
    config: AuthConfig,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes,
    *,
    now: float | None = None,
) -> Authenticated:
    """Check every credential the request presents; returns the schemes that verified.

    ``headers`` as received (names in any case; a mapping or ``(name, value)`` pairs), ``body`` the raw
    bytes as received. Raises :class:`AuthError`: no credentials at all (``scheme`` None, the message
    lists the accepted schemes and their headers); otherwise the first failing scheme in the order
    ``modelops_hmac``, ``grafana_hmac``, ``bearer`` — wrong, malformed, stale, a header repeated, or a
    scheme this receiver holds no secret for (``not_configured``). ``ValueError`` when ``config``
    accepts no scheme at all (the caller answers that as a configuration error, not the sender's).
    """
    accepted = config.accepted
    if not accepted:
        raise ValueError("no credential is configured: neither an HMAC secret nor a bearer token")
    got = _collect(headers)
    schemes = presented(config, headers)
    if not schemes:
        raise AuthError(None, "missing", "missing header: the request carries no credentials; accepted: "
                        + "; ".join(config.describe(s) for s in accepted), accepted=accepted)
    timestamps: list[int] = []
    for scheme in schemes:
        if scheme not in accepted:
            secret = "bearer token" if scheme == BEARER else "HMAC secret"
            raise AuthError(scheme, "not_configured", f"not accepted here: no {secret} is configured; accepted: "
                            + ", ".join(accepted), accepted=accepted)
        try:
            ts = _check(config, scheme, got, body, now)
        except SignatureError as exc:
            raise AuthError(scheme, exc.reason, str(exc), accepted=accepted) from None
        except AuthError as exc:
            exc.accepted = accepted
            raise
        if ts is not None:
            timestamps.append(ts)
    return Authenticated(schemes=schemes, timestamp=timestamps[0] if timestamps else None)


def _check(config: AuthConfig, scheme: str, got: dict[str, list[str]], body: bytes, now: float | None) -> int | None:
    """Verify one presented, accepted scheme (so its secret is set); the signed timestamp, if it has one."""
    if scheme == MODELOPS_HMAC:
        return verify(config.hmac_secret or "", _one(got, scheme, TIMESTAMP_HEADER), _one(got, scheme, SIGNATURE_HEADER),
                      body, now=now, tolerance_s=config.tolerance_s)
    if scheme == GRAFANA_HMAC:
        timestamp = _one(got, scheme, config.grafana_timestamp_header)
        names = [h for h in config.grafana_signature_headers if h.lower() in got]
        if not names:  # only the timestamp header came
            names = [config.grafana_signature_headers[0]]
        ts = None
        for name in names:  # Grafana sends one; every one that came must verify
            ts = verify_grafana(config.hmac_secret or "", _one(got, scheme, name), body, signature_header=name,
                                timestamp_header=config.grafana_timestamp_header, timestamp=timestamp,
                                now=now, tolerance_s=config.tolerance_s)
        return ts
    verify_bearer(config.bearer_token or "", _one(got, scheme, AUTHORIZATION_HEADER))
    return None
