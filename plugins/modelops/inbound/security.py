"""The access check on every route: a body within the size limit, with credentials that verify.

Airflow serves plugin apps without its own authentication, so this dependency is the only gate. The
decision is :func:`include.inbound.authentication.authenticate`'s: the project's HMAC signature,
Grafana's native HMAC signature, or Alertmanager's bearer token; every credential a request presents
must verify. Which scheme let a request in is kept on ``request.state.auth`` and written into the
ledger record of the delivery (``details.auth``) and the log line. It fails closed: with neither an
HMAC secret nor a bearer token configured every request is refused (503).
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status

from include.inbound.authentication import BEARER, GRAFANA_HMAC, MODELOPS_HMAC, AuthConfig, AuthError, authenticate
from include.inbound.payloads import clean_text
from include.inbound.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER
from modelops.inbound import settings

log = logging.getLogger("modelops.inbound")

AUTHENTICATE = f'HMAC-SHA256 headers="{TIMESTAMP_HEADER} {SIGNATURE_HEADER}"'
LOG_LIMIT = 2000


def challenges(config: AuthConfig) -> str:
    """The ``WWW-Authenticate`` value of a 401: one challenge per accepted scheme, the project's first."""
    out = []
    for scheme in config.accepted:
        if scheme == MODELOPS_HMAC:
            out.append(AUTHENTICATE)
        elif scheme == GRAFANA_HMAC:
            out.append(f'HMAC-SHA256 headers="{" ".join(config.headers_of(GRAFANA_HMAC))}"')
        elif scheme == BEARER:
            out.append('Bearer realm="modelops-drift-webhook"')
    return ", ".join(out)


def client_of(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "unknown"


def reject(request: Request, code: int, reason: str, detail: object = None, **headers: str) -> HTTPException:
    """Log the refusal (never the secret or the signature) and build the error to raise.

    ``reason`` may quote the body (field names, an alert's model): it is logged through
    :func:`include.inbound.payloads.clean_text`, so it cannot forge log lines or reorder text.
    """
    log.warning("drift webhook: rejected %s %s from %s: %s %s", request.method, request.url.path,
                client_of(request), code, clean_text(reason, LOG_LIMIT))
    record_delivery(request, "webhook_refused", WEBHOOK_MODEL, clean_text(reason, LOG_LIMIT), {"status": code})
    return HTTPException(code, detail if detail is not None else reason, headers=headers or None)


WEBHOOK_MODEL = "(webhook)"  # the ledger's model for a delivery refused before its model was known


def record_delivery(request: Request, action: str, model: str, reason: str, details: dict, *,
                    dag_id: str | None = None, run_id: str | None = None) -> None:
    """An audit ledger record of a webhook delivery (``webhook_accepted`` / ``webhook_refused``), with its
    source (the client address) and path. A ledger that cannot be written is logged, not turned into
    an error for the sender: the refusal or the started runs stand, and the runs write their own records."""
    from include.governance import audit

    auth = getattr(request.state, "auth", None)  # the scheme that verified, or that failed (refusals)
    try:
        audit.write(None, audit.AuditRecord(
            action=action, model=model, version=None, actor=f"webhook:{client_of(request)}", reason=reason,
            dag_id=dag_id, run_id=run_id,
            details={"path": request.url.path, **({"auth": auth} if auth else {}), **details}))
    except Exception:  # noqa: BLE001 - the ledger's failure must not change the webhook's answer
        log.exception("drift webhook: could not write the audit ledger record of this delivery")


def misconfigured(request: Request, exc: settings.SettingsError) -> HTTPException:
    """503 naming the setting that is not valid (the operator must fix it; the sender may retry)."""
    return reject(request, status.HTTP_503_SERVICE_UNAVAILABLE, f"the drift webhook is misconfigured: {exc}")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing (413) as soon as the declared or the received size exceeds ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise reject(request, status.HTTP_413_CONTENT_TOO_LARGE,
                     f"body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise reject(request, status.HTTP_413_CONTENT_TOO_LARGE, f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def signed_body(
    request: Request,
    timestamp: Annotated[str | None, Header(alias=TIMESTAMP_HEADER, description="Unix seconds when signed.")] = None,
    signature: Annotated[str | None, Header(
        alias=SIGNATURE_HEADER,
        description='"sha256=" + hex HMAC-SHA256 of "{timestamp}." + raw body with the shared secret.',
    )] = None,
) -> bytes:
    """The request body, once its credentials verify; otherwise 401, 413 or 503 (nothing configured, or a
    setting that is not valid: the detail names it).

    ``timestamp`` and ``signature`` document the project's scheme in the OpenAPI schema; every scheme's
    headers (Grafana's names are settings, ``Authorization``) are read from the request itself. A 401
    names the failing scheme and why (``mismatch: grafana_hmac: ...``), or lists the accepted schemes
    when the request carries no credentials, and never quotes a secret or a header's value.
    """
    del timestamp, signature  # read with the other schemes' headers from request.headers
    try:
        config = settings.auth_config()
        limit = settings.max_body_bytes()
    except settings.SettingsError as exc:
        raise misconfigured(request, exc) from None
    if not config.accepted:
        raise reject(request, status.HTTP_503_SERVICE_UNAVAILABLE,
                     f"the drift webhook is not configured: connection {settings.conn_id()!r} has no password "
                     f"(the HMAC secret) and connection {settings.bearer_conn_id()!r} has none (the bearer token)")
    body = await read_body(request, limit)
    try:
        result = authenticate(config, request.headers, body)
    except AuthError as exc:
        request.state.auth = exc.scheme or "none"
        raise reject(request, status.HTTP_401_UNAUTHORIZED, f"{exc.reason}: {exc}", str(exc),
                     **{"WWW-Authenticate": challenges(config)}) from None
    request.state.auth = result.scheme
    return body


SignedBody = Annotated[bytes, Depends(signed_body)]
