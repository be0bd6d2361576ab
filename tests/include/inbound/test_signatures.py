"""Drift webhook signatures: HMAC-SHA256 over timestamp and body, tolerance, every malformed header named."""

from __future__ import annotations

import hashlib
import hmac
import shutil
import subprocess

import pytest

from include.inbound import signatures
from include.inbound.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError
from tests.include.inbound.alert_payloads import BODY, NOW, SECRET

# --- signatures ------------------------------------------------------------------------------------


def test_signature_is_hmac_sha256_over_timestamp_dot_body():
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert signatures.sign(SECRET, NOW, BODY) == f"sha256={expected}"


def test_a_valid_signature_verifies_and_returns_the_timestamp():
    headers = signatures.signed_headers(SECRET, BODY, timestamp=NOW)
    assert signatures.verify(SECRET, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], BODY, now=NOW + 10) == NOW


@pytest.mark.parametrize(("timestamp", "signature", "reason", "names"), [
    (None, None, "missing", f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER}"),
    (str(NOW), "", "missing", SIGNATURE_HEADER),
    ("", "sha256=" + "0" * 64, "missing", TIMESTAMP_HEADER),
    ("yesterday", "sha256=" + "0" * 64, "malformed", TIMESTAMP_HEADER),
    ("-5", "sha256=" + "0" * 64, "malformed", TIMESTAMP_HEADER),
    (str(NOW), "0" * 64, "malformed", SIGNATURE_HEADER),
    (str(NOW), "sha1=" + "0" * 40, "malformed", SIGNATURE_HEADER),
    (str(NOW), "sha256=" + "0" * 64, "mismatch", SIGNATURE_HEADER),
])
def test_bad_headers_are_refused_with_a_reason_naming_the_header(timestamp, signature, reason, names):
    with pytest.raises(SignatureError) as err:
        signatures.verify(SECRET, timestamp, signature, BODY, now=NOW)
    assert err.value.reason == reason
    assert names in str(err.value)


def test_a_tampered_body_or_timestamp_or_another_secret_does_not_verify():
    signature = signatures.sign(SECRET, NOW, BODY)
    for secret, ts, body in [(SECRET, NOW, BODY.replace(b"a-1", b"a-2")), (SECRET, NOW + 1, BODY), ("other", NOW, BODY)]:
        with pytest.raises(SignatureError) as err:
            signatures.verify(secret, str(ts), signature, body, now=NOW)
        assert err.value.reason == "mismatch"


@pytest.mark.parametrize("skew", [-301, 301, -3600, 86400])
def test_an_authentic_request_outside_the_tolerance_is_stale(skew):
    signature = signatures.sign(SECRET, NOW, BODY)
    with pytest.raises(SignatureError) as err:
        signatures.verify(SECRET, str(NOW), signature, BODY, now=NOW + skew)
    assert err.value.reason == "stale"


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_clock_skew_within_five_minutes_either_way_is_accepted(skew):
    assert signatures.verify(SECRET, str(NOW), signatures.sign(SECRET, NOW, BODY), BODY, now=NOW + skew) == NOW


def test_a_custom_tolerance_widens_and_narrows_the_window():
    signature = signatures.sign(SECRET, NOW, BODY)
    assert signatures.verify(SECRET, str(NOW), signature, BODY, now=NOW + 900, tolerance_s=900) == NOW
    with pytest.raises(SignatureError) as err:
        signatures.verify(SECRET, str(NOW), signature, BODY, now=NOW + 11, tolerance_s=10)
    assert err.value.reason == "stale" and "11 s off" in str(err.value) and "tolerance 10 s" in str(err.value)


def test_uppercase_or_mixed_case_hex_and_bytes_secrets_verify_and_return_the_timestamp():
    hexdigest = signatures.sign(SECRET, NOW, BODY).removeprefix("sha256=")
    mixed = "".join(c.upper() if i % 2 else c for i, c in enumerate(hexdigest))
    for secret, signature in [(SECRET.encode(), "sha256=" + hexdigest.upper()), (SECRET, "sha256=" + mixed),
                              (SECRET.encode(), "sha256=" + hexdigest)]:
        assert signatures.verify(secret, str(NOW), signature, BODY, now=NOW) == NOW
    # headers arrive with surrounding blanks from some proxies; the value inside is what counts
    assert signatures.verify(SECRET, f" {NOW} ", f" sha256={hexdigest} ", BODY, now=NOW) == NOW


def test_an_empty_secret_is_a_configuration_error_not_a_pass():
    with pytest.raises(ValueError, match="secret is empty"):
        signatures.verify("", str(NOW), signatures.sign("", NOW, BODY), BODY, now=NOW)


def _flip(hexdigest: str, index: int) -> str:
    """``hexdigest`` with the hex digit at ``index`` replaced by another one (same case)."""
    digit = hexdigest[index]
    other = "0" if digit.lower() != "0" else "1"
    return hexdigest[:index] + other + hexdigest[index + 1:]


@pytest.mark.parametrize("index", [0, 1, 31, 32, 62, 63])
@pytest.mark.parametrize("case", [str.lower, str.upper])
def test_a_signature_differing_in_any_one_hex_digit_is_a_mismatch_in_either_case(index, case):
    hexdigest = signatures.sign(SECRET, NOW, BODY).removeprefix("sha256=")
    assert signatures.verify(SECRET, str(NOW), "sha256=" + case(hexdigest), BODY, now=NOW) == NOW
    with pytest.raises(SignatureError) as err:
        signatures.verify(SECRET, str(NOW), "sha256=" + case(_flip(hexdigest, index)), BODY, now=NOW)
    assert err.value.reason == "mismatch"
    assert SIGNATURE_HEADER in str(err.value) and hexdigest not in str(err.value).lower()  # the MAC is not leaked


def test_every_single_digit_change_of_the_signature_is_refused():
    hexdigest = signatures.sign(SECRET, NOW, BODY).removeprefix("sha256=")
    for index in range(len(hexdigest)):
        with pytest.raises(SignatureError) as err:
            signatures.verify(SECRET, str(NOW), "sha256=" + _flip(hexdigest, index), BODY, now=NOW)
        assert err.value.reason == "mismatch", index


@pytest.mark.parametrize("mangle", [
    lambda h: h,  # no prefix at all
    lambda h: "SHA256=" + h,  # the scheme is lower case, as documented
    lambda h: "sha256:" + h,
    lambda h: "sha256= " + h,
    lambda h: "sha256=" + h[:-1],  # 63 digits
    lambda h: "sha256=" + h + "0",  # 65 digits
    lambda h: "sha256=" + h[:-1] + "g",  # not hex
    lambda h: "sha256=" + h + ",sha256=" + h,
], ids=["bare-hex", "upper-scheme", "colon", "space", "short", "long", "non-hex", "two-signatures"])
def test_a_correct_mac_in_the_wrong_form_is_malformed(mangle):
    hexdigest = signatures.sign(SECRET, NOW, BODY).removeprefix("sha256=")
    with pytest.raises(SignatureError) as err:
        signatures.verify(SECRET, str(NOW), mangle(hexdigest), BODY, now=NOW)
    assert err.value.reason == "malformed"
    assert "must be 'sha256=' followed by 64 hex digits" in str(err.value)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_the_readme_shell_recipe_computes_the_same_signature():
    script = 'ts="$3"; body="$1"; printf \'%s.%s\' "$ts" "$body" | openssl dgst -sha256 -hmac "$2" -hex | sed "s/^.* //"'
    out = subprocess.run(["bash", "-c", script, "sh", BODY.decode(), SECRET, str(NOW)],
                         capture_output=True, text=True, check=True)
    assert f"sha256={out.stdout.strip()}" == signatures.sign(SECRET, NOW, BODY)
