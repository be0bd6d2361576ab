"""Which credentials let a request in: the project's HMAC, Grafana's HMAC, Alertmanager's bearer token.

Every credential a request presents must verify; a wrong one is refused naming its scheme, none at
all is refused listing the accepted schemes; no message carries a secret or a presented value.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from starlette.datastructures import Headers

from include.inbound import authentication, signatures
from include.inbound.authentication import (
    BEARER,
    GRAFANA_HMAC,
    MODELOPS_HMAC,
    AuthConfig,
    AuthError,
    authenticate,
    verify_bearer,
)
from tests.include.inbound.alert_payloads import BODY, NOW, SECRET

TOKEN = "am-bearer-token-4f1d0c"
TS_HEADER = "X-Grafana-Alerting-Timestamp"
FULL = AuthConfig(hmac_secret=SECRET, bearer_token=TOKEN)
WITH_TIMESTAMP = AuthConfig(hmac_secret=SECRET, bearer_token=TOKEN, grafana_timestamp_header=TS_HEADER)


def project() -> dict[str, str]:
    return signatures.signed_headers(SECRET, BODY, timestamp=NOW)


def grafana(header: str = "X-Grafana-Alerting-Signature", **kwargs) -> dict[str, str]:
    return signatures.grafana_signed_headers(SECRET, BODY, signature_header=header, **kwargs)


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refused(config: AuthConfig, headers, body: bytes = BODY) -> AuthError:
    with pytest.raises(AuthError) as err:
        authenticate(config, headers, body, now=NOW)
    for secret in (SECRET, TOKEN):
        assert secret not in str(err.value)
    return err.value


# --- each scheme alone -------------------------------------------------------------------------------


@pytest.mark.parametrize(("headers", "scheme", "timestamp"), [
    (project(), MODELOPS_HMAC, NOW),
    (grafana(), GRAFANA_HMAC, None),
    (grafana("X-Grafana-Alert-Signature"), GRAFANA_HMAC, None),
    (bearer(), BEARER, None),
], ids=["project", "grafana-alerting", "grafana-alert", "bearer"])
def test_each_scheme_alone_is_accepted_and_named(headers, scheme, timestamp):
    result = authenticate(FULL, headers, BODY, now=NOW)
    assert (result.scheme, result.schemes, result.timestamp) == (scheme, (scheme,), timestamp)


def test_header_names_are_matched_in_any_case_as_http_sends_them():
    lowered = {k.lower(): v for k, v in {**grafana(), **bearer()}.items()}
    assert authenticate(FULL, lowered, BODY).scheme == "grafana_hmac+bearer"
    assert authenticate(FULL, Headers(headers={"authorization": f"bEaReR   {TOKEN}"}), BODY).scheme == BEARER


def test_grafana_with_a_timestamp_header_configured_returns_the_signed_timestamp():
    headers = grafana(timestamp_header=TS_HEADER, timestamp=NOW)
    assert authenticate(WITH_TIMESTAMP, headers, BODY, now=NOW + 10).timestamp == NOW


def test_grafana_with_a_timestamp_header_configured_requires_it():
    error = refused(WITH_TIMESTAMP, grafana())
    assert (error.scheme, error.reason) == (GRAFANA_HMAC, "missing")
    assert str(error) == f"grafana_hmac: missing header {TS_HEADER}"


def test_a_stale_grafana_timestamp_is_refused_naming_the_scheme():
    headers = grafana(timestamp_header=TS_HEADER, timestamp=NOW - 600)
    error = refused(WITH_TIMESTAMP, headers)
    assert (error.scheme, error.reason) == (GRAFANA_HMAC, "stale")
    assert str(error).startswith(f"grafana_hmac: {TS_HEADER} is 600 s off the server clock")


def test_a_lone_grafana_timestamp_header_is_a_grafana_request_missing_its_signature():
    error = refused(WITH_TIMESTAMP, {TS_HEADER: str(NOW)})
    assert (error.scheme, error.reason) == (GRAFANA_HMAC, "missing")
    assert "X-Grafana-Alerting-Signature" in str(error)


def test_custom_grafana_header_names_replace_the_defaults():
    config = AuthConfig(hmac_secret=SECRET, grafana_signature_headers=("X-Acme-Sig",))
    assert authenticate(config, grafana("X-Acme-Sig"), BODY).scheme == GRAFANA_HMAC
    error = refused(config, grafana())  # the default name is not one of the configured ones
    assert (error.scheme, error.reason) == (None, "missing")
    assert "grafana_hmac (header X-Acme-Sig: <hex>)" in str(error)


# --- wrong credentials: 401 naming the scheme ----------------------------------------------------------


@pytest.mark.parametrize(("headers", "scheme", "reason"), [
    (signatures.signed_headers("other", BODY, timestamp=NOW), MODELOPS_HMAC, "mismatch"),
    ({signatures.TIMESTAMP_HEADER: str(NOW), signatures.SIGNATURE_HEADER: "deadbeef"}, MODELOPS_HMAC, "malformed"),
    ({"X-Grafana-Alerting-Signature": signatures.grafana_sign("other", BODY)}, GRAFANA_HMAC, "mismatch"),
    ({"X-Grafana-Alert-Signature": "sha256=" + signatures.grafana_sign(SECRET, BODY)}, GRAFANA_HMAC, "malformed"),
    (bearer("not-the-token"), BEARER, "mismatch"),
    (bearer(TOKEN + "x"), BEARER, "mismatch"),
    (bearer(TOKEN[:-1]), BEARER, "mismatch"),
    ({"Authorization": TOKEN}, BEARER, "malformed"),  # no scheme word: the token is not echoed
    ({"Authorization": "Basic " + TOKEN}, BEARER, "malformed"),
    ({"Authorization": "Bearer "}, BEARER, "malformed"),
    ({"Authorization": ""}, BEARER, "missing"),
], ids=["project-secret", "project-form", "grafana-secret", "grafana-form", "token", "token-longer",
        "token-shorter", "bare-token", "basic", "bearer-empty", "empty"])
def test_a_wrong_credential_is_refused_naming_its_scheme_never_its_value(headers, scheme, reason):
    error = refused(FULL, headers)
    assert (error.scheme, error.reason, error.accepted) == (scheme, reason, (MODELOPS_HMAC, GRAFANA_HMAC, BEARER))
    assert str(error).startswith(f"{scheme}: ")
    for value in headers.values():
        if len(value) > 8:
            assert value not in str(error) and value.split()[-1] not in str(error)


def test_a_signature_over_other_bytes_than_those_received_fails_every_hmac_scheme():
    reserialised = BODY.replace(b'", "', b'","')
    assert reserialised != BODY
    for headers, scheme in ((project(), MODELOPS_HMAC), (grafana(), GRAFANA_HMAC)):
        error = refused(FULL, headers, body=reserialised)
        assert (error.scheme, error.reason) == (scheme, "mismatch")


def test_every_presented_credential_must_verify_one_good_one_does_not_cover_a_wrong_one():
    assert authenticate(FULL, {**grafana(), **bearer()}, BODY).scheme == "grafana_hmac+bearer"
    assert authenticate(FULL, {**project(), **bearer()}, BODY, now=NOW).schemes == (MODELOPS_HMAC, BEARER)
    error = refused(FULL, {**grafana(), **bearer("wrong")})
    assert (error.scheme, error.reason) == (BEARER, "mismatch")
    error = refused(FULL, {**project(), "X-Grafana-Alerting-Signature": "0" * 64})
    assert (error.scheme, error.reason) == (GRAFANA_HMAC, "mismatch")


def test_a_repeated_credential_header_is_malformed():
    raw = [(b"authorization", f"Bearer {TOKEN}".encode()), (b"authorization", b"Bearer other")]
    error = refused(FULL, Headers(raw=raw))
    assert (error.scheme, error.reason) == (BEARER, "malformed") and "appears 2 times" in str(error)


# --- no credentials, and schemes not configured ---------------------------------------------------------


def test_no_credentials_at_all_lists_the_accepted_schemes_and_their_headers():
    error = refused(WITH_TIMESTAMP, {"Content-Type": "application/json", "User-Agent": "Grafana/12.1.0"})
    assert (error.scheme, error.reason) == (None, "missing")
    assert str(error) == (
        "missing header: the request carries no credentials; accepted: "
        "modelops_hmac (headers X-Modelops-Timestamp and X-Modelops-Signature: sha256=<hex>); "
        "grafana_hmac (header X-Grafana-Alerting-Signature or X-Grafana-Alert-Signature: <hex> "
        f"with {TS_HEADER}: <unix seconds>); bearer (header Authorization: Bearer <token>)")


def test_only_the_configured_schemes_are_accepted():
    hmac_only = AuthConfig(hmac_secret=SECRET)
    assert hmac_only.accepted == (MODELOPS_HMAC, GRAFANA_HMAC)
    error = refused(hmac_only, bearer())
    assert (error.scheme, error.reason) == (BEARER, "not_configured")
    assert str(error) == "bearer: not accepted here: no bearer token is configured; accepted: modelops_hmac, grafana_hmac"

    bearer_only = AuthConfig(bearer_token=TOKEN)
    assert bearer_only.accepted == (BEARER,)
    for headers, scheme in ((project(), MODELOPS_HMAC), (grafana(), GRAFANA_HMAC)):
        error = refused(bearer_only, headers)
        assert (error.scheme, error.reason) == (scheme, "not_configured") and "no HMAC secret" in str(error)
    assert "bearer (header Authorization" in str(refused(bearer_only, {}))

    no_grafana = AuthConfig(hmac_secret=SECRET, grafana_signature_headers=())
    assert no_grafana.accepted == (MODELOPS_HMAC,)
    assert refused(no_grafana, grafana()).scheme is None  # its header means nothing here: no credentials


def test_a_configuration_without_any_secret_is_the_callers_error_not_the_senders():
    with pytest.raises(ValueError, match="no credential is configured"):
        authenticate(AuthConfig(), bearer(), BODY)


def test_the_secrets_stay_out_of_the_configs_repr():
    assert SECRET not in repr(FULL) and TOKEN not in repr(FULL)


# --- the bearer comparison ------------------------------------------------------------------------------


def test_the_bearer_token_is_compared_in_constant_time_over_digests_of_equal_length(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    verify_bearer(TOKEN, f"Bearer {TOKEN}")
    with pytest.raises(AuthError):
        verify_bearer(TOKEN, "Bearer x")
    digest = hashlib.sha256(TOKEN.encode()).digest()
    assert calls == [(digest, digest), (digest, hashlib.sha256(b"x").digest())]


def test_an_empty_configured_token_is_a_configuration_error():
    with pytest.raises(ValueError, match="bearer token is empty"):
        verify_bearer("", "Bearer ")


def test_the_module_imports_no_airflow():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(authentication))
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [n for n in names if n.split(".")[0] == "airflow"]
