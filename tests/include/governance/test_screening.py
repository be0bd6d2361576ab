"""Tests for include.governance.screening: what is flagged as personal data, what is not, and that only counts come out."""

from __future__ import annotations

import importlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import phonenumbers
import pytest
import yaml
from stdnum import luhn

from include.config import ConfigError, ScreeningConfig, load_model_config
from include.demo.datagen import generate_batch
from include.governance import screening
from include.governance.screening import CHANCE_MIN_ROWS, ScreeningReport, screen_frame

ROOT = Path(__file__).resolve().parents[3]

# Valid check digits (the libraries' and networks' published test numbers).
CARDS = ["4111111111111111", "4012888888881881", "5555555555554444", "2223003122003222", "378282246310005",
         "6011111111111117", "3530111333300000", "30569309025904", "6759649826438453"]
IBANS = ["DE89 3704 0044 0532 0130 00", "GB29 NWBK 6016 1331 9268 19", "NL91ABNA0417164300",
         "FR1420041010050500013M02606"]
NATIONAL_IDS = {"us.ssn": "536-90-4399", "nl.bsn": "111222333", "de.idnr": "36574261809",
                "fr.nir": "2 95 10 99 126 111 93", "es.dni": "54362315K"}
EMAILS = ["jane.doe@gmail.com", "j.smith+loans@mail.de", "x_y@sub.example.co.uk"]
PHONES = ["+44 20 7946 0958", "020 7946 0958", "(650) 253-0000", "06 12 34 56 78", "+49 30 901820",
          "+33 6 12 34 56 78", "650-253-0000"]
# The same with one check digit (or character) wrong, and numbers that only look like them.
NEAR_MISSES = {
    "card": ["4111111111111112", "5555555555554445", "378282246310006", "6011111111111118"],
    "iban": ["DE89 3704 0044 0532 0130 01", "NL91ABNA0417164301", "GB29 NWBK 6016 1331 9268 18"],
    "national_id.nl.bsn": ["111222334", "111222332"],
    "national_id.de.idnr": ["36574261808"],
    "national_id.fr.nir": ["2 95 10 99 126 111 94"],
    "national_id.es.dni": ["54362315J", "54362315-J"],
    "national_id.us.ssn": ["000-90-4399", "536-00-4399", "536-90-0000", "536904399"],  # bare: no check digit
    "email": ["jane.doe@gmail", "jane@localhost", "a@b.test", "jane.doe@@gmail.com", "@gmail.com"],
    "phone": ["+44 20 7946 09", "6502530000", "612345678"],  # too short; bare digits without a prefix
}
NOT_PERSONAL = ["1,234.56", "12345.67", "EUR 1 234 567,89", "paid 1234567.89", "2026-01-05", "05/01/2026",
                "2026-01-05T10:00:00Z", "10:00:00", "0000123456", "000012345", "APP-6f1e2a3b-000012345",
                "order-111222333", "v1.2.3", "rent", "debt_consolidation", "12 items at 3 each", "",
                "192.168.100.254", "host 10.20.30.40 down", "0f3e2d1c-4111-4111-1111-111111111111",
                "16ee2a34-0612-4345-8678-000111222333", "11122201",  # a BSN only when padded to 000111222...
                "675964-982643-8453"]  # a valid Maestro number, grouped as no card is


def _screen(values, **config) -> ScreeningReport:
    return screen_frame(pd.DataFrame({"c": values}), ScreeningConfig(**config))


def _counts(value: str) -> dict[str, int]:
    return _screen([value]).columns[0].counts


# --- each detector ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", CARDS)
def test_card_numbers_with_a_valid_luhn_digit_are_flagged(value) -> None:
    assert _counts(value) == {"card": 1}
    grouped = " ".join(value[i:i + 4] for i in range(0, len(value), 4))
    assert _counts(f"card {grouped} exp 12/27") == {"card": 1}


@pytest.mark.parametrize("value", IBANS)
def test_ibans_with_valid_check_digits_are_flagged(value) -> None:
    assert _counts(value) == {"iban": 1}
    assert _counts(f"please pay to IBAN:{value.replace(' ', '')}; thanks") == {"iban": 1}


@pytest.mark.parametrize(("module", "value"), NATIONAL_IDS.items())
def test_national_identifiers_are_flagged_per_module(module, value) -> None:
    assert _counts(value) == {f"national_id.{module}": 1}
    assert _counts(f"customer id {value} verified") == {f"national_id.{module}": 1}


@pytest.mark.parametrize("value", EMAILS)
def test_email_addresses_are_flagged(value) -> None:
    assert _counts(value) == {"email": 1}
    assert _counts(f"reply to <{value}>.") == {"email": 1}


@pytest.mark.parametrize("value", PHONES)
def test_phone_numbers_written_as_such_are_flagged(value) -> None:
    assert _counts(value) == {"phone": 1}
    assert _counts(f"call me on {value} after 5") == {"phone": 1}


@pytest.mark.parametrize(("detector", "value"), [(d, v) for d, values in NEAR_MISSES.items() for v in values])
def test_near_misses_are_not_flagged(detector, value) -> None:
    assert detector not in _counts(value)
    assert detector not in _counts(f"ref {value} noted")


@pytest.mark.parametrize("value", NOT_PERSONAL)
def test_amounts_dates_and_codes_are_not_flagged(value) -> None:
    assert _counts(value) == {}


def test_phone_regions_decide_which_national_formats_are_known() -> None:
    assert _counts("020 7946 0958") == {"phone": 1}
    assert _screen(["020 7946 0958"], phone_regions=["US"]).columns[0].counts == {}
    assert _screen(["+44 20 7946 0958"], phone_regions=["US"]).columns[0].counts == {"phone": 1}  # international


def test_detectors_and_national_ids_can_be_chosen() -> None:
    values = [CARDS[0], EMAILS[0], NATIONAL_IDS["nl.bsn"], NATIONAL_IDS["de.idnr"]]
    only = _screen(values, detectors=["card", "national_id"], national_ids=["de.idnr"])
    assert only.detectors == ("card", "national_id.de.idnr")
    assert only.columns[0].counts == {"card": 1, "national_id.de.idnr": 1}


# --- ids and other numbers ---------------------------------------------------------------------------


def test_a_column_of_random_16_digit_ids_is_not_flagged() -> None:
    ids = [str(v) for v in np.random.default_rng(0).integers(10**15, 10**16, 5000)]
    luhn_and_prefix = sum(screening._card_prefix(v) and luhn.is_valid(v) for v in ids)
    assert luhn_and_prefix > 50  # about 3 in 100 pass the card rules by chance ...

    got = _screen(ids).columns[0]

    assert got.counts == {} and got.flagged_rows == 0
    assert got.chance == {"card": luhn_and_prefix}  # ... and are counted as chance, not flagged


def test_a_column_of_random_9_digit_ids_is_not_taken_for_bsns() -> None:
    ids = [f"{v:09d}" for v in np.random.default_rng(1).integers(10**8, 10**9, 2000)]
    got = _screen(ids).columns[0]
    assert got.counts == {} and got.chance["national_id.nl.bsn"] > 100  # 1 in 11 passes the BSN test


def test_a_column_of_real_card_numbers_is_flagged_whatever_its_size() -> None:
    values = (CARDS * 10)[: CHANCE_MIN_ROWS * 3]
    assert _screen(values).columns[0].counts == {"card": len(values)}
    assert _screen(values[:3]).columns[0].counts == {"card": 3}


def test_grouped_amounts_are_not_phone_numbers_but_a_column_of_phone_numbers_is() -> None:
    rng = np.random.default_rng(3)
    amounts = [f"{rng.integers(100, 999)} {rng.integers(0, 999):03d} {rng.integers(0, 999):03d}" for _ in range(300)]
    got = _screen(amounts).columns[0]
    assert got.counts == {} and got.chance["phone"] > 50  # about a third are valid Spanish numbers as written
    mobiles = [f"6{rng.integers(10, 99)} {rng.integers(100, 999)} {rng.integers(100, 999)}" for _ in range(300)]
    assert _screen(mobiles).columns[0].counts == {"phone": 300}


def test_card_numbers_in_free_text_count_even_among_other_numbers() -> None:
    refs = [f"ref {v} ok" for v in np.random.default_rng(2).integers(10**15, 10**16, 200)]
    grouped = [f"card {c[:4]} {c[4:8]} {c[8:12]} {c[12:]}" for c in CARDS[:2]]
    got = _screen(refs + grouped).columns[0]
    assert got.counts == {"card": 2}  # written as a card: never discounted


def test_the_demo_data_is_not_flagged() -> None:
    """Every dataset `make demo` (scripts/demo.py, the Makefile) generates, whole, passes the screen."""
    batches = [
        generate_batch(20_000, seed=1),
        generate_batch(500, seed=3, start="2026-11-22T09:00:00Z", hours=1),
        generate_batch(2_000, seed=4, start="2026-11-21T00:00:00Z", hours=24),
        generate_batch(600, seed=11, start="2026-11-30T10:00:00Z", hours=1),
        generate_batch(600, seed=12, start="2026-11-30T11:00:00Z", hours=1, drift=0.9, concept_drift=1.0),
        generate_batch(60_000, seed=6, start="2026-06-01T00:00:00Z"),
        generate_batch(20_000, seed=7, start="2026-10-31T00:00:00Z", drift=0.9, concept_drift=1.0),
        generate_batch(5_000, seed=2, start="2026-02-01T00:00:00Z", corruption="nulls"),
    ]
    for batch in batches:
        every = list(batch.columns)  # numbers too: all of the demo's columns, as text or integers where they are
        report = screen_frame(batch.astype({c: str for c in batch.columns if batch[c].dtype.kind == "f"}),
                              ScreeningConfig(columns=every))
        assert report.flagged_rows == 0, report.summary()
        assert {c.column for c in report.columns} == set(every) - {"applied_at"}


# --- counts, columns, and no values ------------------------------------------------------------------


def test_counts_per_column_and_detector_and_rows_over_all_columns() -> None:
    frame = pd.DataFrame({
        "notes": [f"mail {EMAILS[0]} or call {PHONES[0]}", "nothing here", f"card {CARDS[0]}", None, "pay 12.50"],
        "region": pd.Categorical(["north", CARDS[1], "south", CARDS[1], "north"]),
        "amount": [1.0, 2.0, 3.0, 4.0, 5.0],
        "contact": [None, None, EMAILS[1], EMAILS[1], "n/a"],
    })

    report = screen_frame(frame)

    assert [c.column for c in report.columns] == ["notes", "region", "contact"]  # text columns only
    notes, region, contact = report.columns
    assert (notes.rows, notes.flagged_rows, notes.counts) == (4, 2, {"email": 1, "card": 1, "phone": 1})
    assert (region.rows, region.flagged_rows, region.counts) == (5, 2, {"card": 2})
    assert (contact.rows, contact.flagged_rows, contact.counts) == (3, 2, {"email": 2})
    assert report.rows == 5 and report.flagged_rows == 4  # rows 0, 1, 2, 3
    assert report.flagged() == [("notes", "email", 1), ("notes", "card", 1), ("notes", "phone", 1),
                                ("region", "card", 2), ("contact", "email", 2)]
    assert report.flagged_columns == ["notes", "region", "contact"]
    assert report.exceeds(3) and not report.exceeds(4)
    assert report.summary().startswith("personal data in 4 of 5 rows: notes: email 1 row, card 1 row, phone 1 row;")


def test_named_columns_integers_and_what_is_skipped() -> None:
    frame = pd.DataFrame({"ssn_digits": [4111111111111111, 5], "score": [0.5, 0.7], "notes": ["a", "b"]})
    report = screen_frame(frame, ScreeningConfig(columns=["ssn_digits", "score", "missing", "notes"]))
    assert [c.column for c in report.columns] == ["ssn_digits", "notes"]
    assert report.columns[0].counts == {"card": 1}
    assert report.skipped == {"score": "not text or integers (float64)", "missing": "not in the data"}
    assert screen_frame(frame, columns=["notes"]).flagged_rows == 0  # the argument overrides the config


def test_an_empty_frame_and_a_frame_without_text() -> None:
    assert screen_frame(pd.DataFrame({"c": pd.Series([], dtype=object)})).flagged_rows == 0
    report = screen_frame(pd.DataFrame({"x": [1.0, 2.0]}))
    assert report.columns == () and report.rows == 2 and report.flagged_rows == 0


def test_odd_values_neither_raise_nor_flag() -> None:
    odd = ["\u0664\u0661\u0661\u0661" * 4, "\uff14\uff11\uff11\uff11" * 4, "4111\u00b2" * 3, "+" * 50,
           "0" * 500, "1-" * 300, "@" * 10 + "a@b", b"\x00\x01".decode(), "(((((0))))) 12 34 56", "x" * 100_000]
    report = _screen(odd + [CARDS[0]])
    assert report.columns[0].counts == {"card": 1}


def test_values_never_appear_in_the_report_or_the_log(caplog) -> None:
    secrets = [CARDS[0], IBANS[0], EMAILS[0], PHONES[0], NATIONAL_IDS["nl.bsn"], NATIONAL_IDS["us.ssn"]]
    frame = pd.DataFrame({"notes": [f"value {s} here" for s in secrets] + [b"\xff raw bytes", 12345, None]})
    with caplog.at_level(logging.DEBUG):
        report = screen_frame(frame)
    assert report.flagged_rows == len(secrets)
    texts = [repr(report), str(report), report.summary(), json.dumps(report.as_dict()), caplog.text,
             repr(report.flagged())]
    fragments = {s for s in secrets} | {s.replace(" ", "") for s in secrets} | {s[-4:] for s in secrets}
    for text in texts:
        for fragment in fragments:
            assert fragment not in text, f"{fragment!r} leaked"


# --- configuration ------------------------------------------------------------------------------------


def test_the_default_modules_and_regions_exist() -> None:
    """The config checks only entries other than its defaults at load: the defaults must be real."""
    config = ScreeningConfig()
    for name in config.national_ids:
        module = importlib.import_module(f"stdnum.{name}")
        assert callable(module.is_valid) and callable(module.compact)
    assert set(config.phone_regions) <= phonenumbers.SUPPORTED_REGIONS
    assert config.enabled and config.columns is None and config.max_flagged_rows == 0
    assert config.inference_tier == "warning"
    assert set(config.detectors) == set(screening.DETECTORS)


@pytest.fixture()
def config_dir(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "config", tmp_path / "config")
    return tmp_path / "config"


def _load_with(config_dir: Path, screening_section: dict):
    path = config_dir / "models" / "credit_approval.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["compliance"]["screening"] = screening_section
    path.write_text(yaml.safe_dump(raw))
    return load_model_config(path)


@pytest.mark.parametrize(("section", "message"), [
    ({"national_ids": ["us.ssn", "gb.nino"]},
     "compliance.screening: Value error, national_ids.1: unknown python-stdnum module 'gb.nino'"),
    ({"national_ids": ["luhn"]}, "compliance.screening: Value error, national_ids.0: stdnum.luhn is not a number module"),
    ({"national_ids": ["US.SSN"]}, "national_ids.0: 'US.SSN' is not a python-stdnum module name"),
    ({"phone_regions": ["GB", "XX"]}, "compliance.screening: Value error, phone_regions.1: 'XX' is not a region"),
    ({"detectors": ["email", "passport"]}, "compliance.screening.detectors.1: Input should be"),
    ({"inference_tier": "rollback"}, "compliance.screening.inference_tier: Input should be 'warning' or 'critical'"),
    ({"max_flagged_rows": -1}, "compliance.screening.max_flagged_rows: Input should be greater than or equal to 0"),
    ({"columns": []}, "compliance.screening.columns: List should have at least 1 item"),
    ({"colums": ["notes"]}, "compliance.screening.colums: unknown key"),
])
def test_config_errors_name_the_key(config_dir, section, message) -> None:
    with pytest.raises(ConfigError) as err:
        _load_with(config_dir, section)
    assert "credit_approval.yaml: " in str(err.value) and message in str(err.value)


def test_config_accepts_other_modules_and_regions(config_dir) -> None:
    config = _load_with(config_dir, {"national_ids": ["it.codicefiscale", "gb.nhs"], "phone_regions": ["IT"],
                                     "columns": ["notes"], "inference_tier": "critical", "max_flagged_rows": 3})
    got = config.compliance.screening
    assert got.national_ids == ["it.codicefiscale", "gb.nhs"] and got.phone_regions == ["IT"]
    assert (got.columns, got.inference_tier, got.max_flagged_rows) == (["notes"], "critical", 3)
    assert screen_frame(pd.DataFrame({"notes": ["codice RSSMRA85T10A562S"]}), got).flagged() == [
        ("notes", "national_id.it.codicefiscale", 1)]
