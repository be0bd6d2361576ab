"""Grafana's native webhook signature: hex HMAC-SHA256 over the raw body, or over "<timestamp>:" + body.

The expected values are computed independently (openssl, pinned hex) rather than with the code under test.
"""

from __future__ import annotations

import hmac
import json
import shutil
import subprocess

import pytest

from include.inbound import signatures
from include.inbound.signatures import GRAFANA_SIGNATURE_HEADERS, SignatureError
from tests.include.inbound.alert_payloads import NOW, SECRET

ALERTING, ALERT = GRAFANA_SIGNATURE_HEADERS
TS_HEADER = "X-Grafana-Alerting-Timestamp"
BODY = b'{"a":1}'
# printf '%s' '{"a":1}' | openssl dgst -sha256 -hmac test-secret
PINNED_BODY_ONLY = "179bf20a8b9040a32368814a68b0dc270823b5968498e0a73796c4202708ed8d"
# printf '%s:%s' 1800000000 '{"a":1}' | openssl dgst -sha256 -hmac test-secret
PINNED_WITH_TIMESTAMP = "ffaeb30247faaee1ef9d3bec24890301520c8f988bb33cae675786789738a921"


def test_the_default_header_names_are_grafanas_ui_name_then_its_code_comments_name():
    assert GRAFANA_SIGNATURE_HEADERS == ("X-Grafana-Alerting-Signature", "X-Grafana-Alert-Signature")


def test_the_signature_is_bare_hex_hmac_sha256_of_the_body_or_of_timestamp_colon_body():
    assert signatures.grafana_sign(SECRET, BODY) == PINNED_BODY_ONLY
    assert signatures.grafana_sign(SECRET, BODY, NOW) == PINNED_WITH_TIMESTAMP
    assert signatures.grafana_sign(SECRET, BODY, str(NOW)) == PINNED_WITH_TIMESTAMP
    assert signatures.grafana_sign(SECRET.encode(), BODY) == PINNED_BODY_ONLY
    # not the project's scheme ("<ts>." + body, "sha256=" prefix)
    assert signatures.sign(SECRET, NOW, BODY) != f"sha256={PINNED_WITH_TIMESTAMP}"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
@pytest.mark.parametrize("timestamp", [None, NOW])
def test_openssl_computes_the_same_signature_over_a_real_grafana_body(timestamp):
    body = json.dumps({"receiver": "modelops", "status": "firing", "title": "[FIRING:1] FeatureDrift > 0.3 & more"},
                      separators=(",", ":")).encode()
    message = body if timestamp is None else f"{timestamp}:".encode() + body
    out = subprocess.run(["openssl", "dgst", "-sha256", "-hmac", SECRET, "-hex"], input=message,
                         capture_output=True, check=True)
    assert out.stdout.decode().split()[-1] == signatures.grafana_sign(SECRET, body, timestamp)


@pytest.mark.parametrize("header", GRAFANA_SIGNATURE_HEADERS)
def test_a_body_only_signature_verifies_under_either_header_name_and_has_no_timestamp(header):
    headers = signatures.grafana_signed_headers(SECRET, BODY, signature_header=header)
    assert headers == {header: PINNED_BODY_ONLY}
    assert signatures.verify_grafana(SECRET, headers[header], BODY, signature_header=header) is None


def test_without_a_timestamp_header_configured_a_sent_timestamp_is_ignored_and_not_signed():
    # the body-only form verifies whatever timestamp value rides along; the timestamped form does not
    assert signatures.verify_grafana(SECRET, PINNED_BODY_ONLY, BODY, timestamp="garbage") is None
    with pytest.raises(SignatureError) as err:
        signatures.verify_grafana(SECRET, PINNED_WITH_TIMESTAMP, BODY, timestamp=str(NOW))
    assert err.value.reason == "mismatch"
    assert "no timestamp header is configured here" in str(err.value)


def test_a_timestamped_signature_verifies_and_returns_the_timestamp():
    headers = signatures.grafana_signed_headers(SECRET, BODY, timestamp_header=TS_HEADER, timestamp=NOW)
    assert headers == {TS_HEADER: str(NOW), ALERTING: PINNED_WITH_TIMESTAMP}
    assert signatures.verify_grafana(SECRET, headers[ALERTING], BODY, timestamp_header=TS_HEADER,
                                     timestamp=headers[TS_HEADER], now=NOW + 299) == NOW


def test_with_a_timestamp_header_configured_the_timestamp_is_required():
    with pytest.raises(SignatureError) as err:
        signatures.verify_grafana(SECRET, PINNED_BODY_ONLY, BODY, timestamp_header=TS_HEADER, timestamp=None, now=NOW)
    assert (err.value.reason, str(err.value)) == ("missing", f"missing header {TS_HEADER}")
    # and a body-only signature does not pass with a timestamp added afterwards
    with pytest.raises(SignatureError) as err:
        signatures.verify_grafana(SECRET, PINNED_BODY_ONLY, BODY, timestamp_header=TS_HEADER, timestamp=str(NOW),
                                  now=NOW)
    assert err.value.reason == "mismatch" and f"does not match {TS_HEADER} and the body" in str(err.value)


@pytest.mark.parametrize("skew", [-301, 301, 86400])
def test_an_authentic_timestamp_outside_the_window_is_stale(skew):
    with pytest.raises(SignatureError) as err:
        signatures.verify_grafana(SECRET, PINNED_WITH_TIMESTAMP, BODY, timestamp_header=TS_HEADER,
                                  timestamp=str(NOW), now=NOW + skew)
    assert err.value.reason == "stale" and TS_HEADER in str(err.value) and "tolerance 300 s" in str(err.value)


def test_a_forged_fresh_timestamp_on_an_old_signature_is_a_mismatch_not_stale():
    with pytest.raises(SignatureError) as err:
        signatures.verify_grafana(SECRET, PINNED_WITH_TIMESTAMP, BODY, timestamp_header=TS_HEADER,
                                  timestamp=str(NOW + 3600), now=NOW + 3600)
    assert err.value.reason == "mismatch"


def test_the_signature_covers_the_exact_bytes_a_reserialised_body_fails():
    sent = b'{"receiver":"modelops","status":"firing","title":"drift \\u003e 0.3","alerts":[]}\n'
    signature = signatures.grafana_sign(SECRET, sent)
    assert signatures.verify_grafana(SECRET, signature, sent) is None
    same_json = [json.dumps(json.loads(sent)).encode(),  # spaces, ">" unescaped, no newline
                 json.dumps(json.loads(sent), separators=(",", ":")).encode(),
                 sent.rstrip(b"\n")]
    for body in same_json:
        assert json.loads(body) == json.loads(sent) and body != sent
        with pytest.raises(SignatureError) as err:
            signatures.verify_grafana(SECRET, signature, body)
        assert err.value.reason == "mismatch"


def test_uppercase_hex_and_surrounding_blanks_verify():
    assert signatures.verify_grafana(SECRET, f" {PINNED_BODY_ONLY.upper()} ", BODY) is None


@pytest.mark.parametrize("value", [
    "sha256=" + PINNED_BODY_ONLY,  # the project's form is not Grafana's
    PINNED_BODY_ONLY[:-1],
    PINNED_BODY_ONLY + "0",
    PINNED_BODY_ONLY[:-1] + "g",
], ids=["prefixed", "short", "long", "non-hex"])
def test_a_signature_not_64_hex_digits_is_malformed_and_not_quoted(value):
    with pytest.raises(SignatureError) as err:
        signatures.verify_grafana(SECRET, value, BODY, signature_header=ALERT)
    assert err.value.reason == "malformed" and ALERT in str(err.value)
    assert PINNED_BODY_ONLY not in str(err.value)


@pytest.mark.parametrize("value", ["yesterday", "-5", "1.5", "1800000000000000"])
def test_a_timestamp_that_is_not_unix_seconds_is_malformed(value):
    with pytest.raises(SignatureError) as err:
        signatures.verify_grafana(SECRET, PINNED_WITH_TIMESTAMP, BODY, timestamp_header=TS_HEADER, timestamp=value,
                                  now=NOW)
    assert err.value.reason == "malformed" and TS_HEADER in str(err.value)


@pytest.mark.parametrize("signature", [None, "", "  "])
def test_a_missing_signature_names_the_header(signature):
    with pytest.raises(SignatureError) as err:
        signatures.verify_grafana(SECRET, signature, BODY, signature_header=ALERT)
    assert (err.value.reason, str(err.value)) == ("missing", f"missing header {ALERT}")


def test_another_secret_does_not_verify_and_an_empty_one_is_a_configuration_error():
    with pytest.raises(SignatureError) as err:
        signatures.verify_grafana("other", PINNED_BODY_ONLY, BODY)
    assert err.value.reason == "mismatch"
    with pytest.raises(ValueError, match="secret is empty"):
        signatures.verify_grafana("", signatures.grafana_sign("", BODY), BODY)


def test_the_comparison_is_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert signatures.verify_grafana(SECRET, PINNED_BODY_ONLY, BODY) is None
    with pytest.raises(SignatureError):
        signatures.verify_grafana(SECRET, PINNED_WITH_TIMESTAMP, BODY)
    assert calls == [(PINNED_BODY_ONLY.encode(), PINNED_BODY_ONLY.encode()),
                     (PINNED_BODY_ONLY.encode(), PINNED_WITH_TIMESTAMP.encode())]


def test_no_mac_of_one_form_verifies_a_json_body_under_another():
    """One secret keys the project's and Grafana's schemes: a MAC captured from one cannot pass as the other."""
    body = json.dumps({"model": "credit_approval", "alert_id": "a-1", "status": "firing"}).encode()
    project = signatures.sign(SECRET, NOW, body).removeprefix("sha256=")
    grafana_ts = signatures.grafana_sign(SECRET, body, NOW)
    grafana_body = signatures.grafana_sign(SECRET, body)
    assert len({project, grafana_ts, grafana_body}) == 3
    for mac in (project, grafana_ts):
        with pytest.raises(SignatureError):
            signatures.verify_grafana(SECRET, mac, body)
    for mac in (project, grafana_body):
        with pytest.raises(SignatureError):
            signatures.verify_grafana(SECRET, mac, body, timestamp_header=TS_HEADER, timestamp=str(NOW), now=NOW)
    for mac in (grafana_ts, grafana_body):
        with pytest.raises(SignatureError):
            signatures.verify(SECRET, str(NOW), f"sha256={mac}", body, now=NOW)
