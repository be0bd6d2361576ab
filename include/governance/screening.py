"""Personal data in a DataFrame: which columns hold it, found by which detector, in how many rows; never the values.

:func:`screen_frame` looks at the text columns of a frame (every ``object``/``string``/``category``
column, or the ones ``compliance.screening.columns`` names) for:

* ``email``: e-mail addresses, found with a broad pattern (``local@domain.tld``) and kept when
  ``email_validator.validate_email(..., check_deliverability=False)`` accepts them (syntax, a real
  top-level domain, no special-use domain such as ``.test`` or ``localhost``; no DNS lookup). Only
  cells with an ``@`` get there, so validating each candidate costs nothing measurable;
* ``iban``: IBANs, ``stdnum.iban.is_valid`` (country, length, the ISO 7064 mod-97 check digits);
* ``card``: payment card numbers: 12-19 digits whose issuer prefix and length are those of a payment
  network (:data:`CARD_RANGES`, the IIN table of Wikipedia's "Payment card number", ISO/IEC 7812) and
  that pass ``stdnum.luhn.is_valid``;
* ``national_id.<module>``: the python-stdnum modules of ``national_ids`` (default ``us.ssn``,
  ``nl.bsn``, ``de.idnr``, ``fr.nir``, ``es.dni``; python-stdnum 2.2 has no ``gb.nino``):
  ``stdnum.<module>.is_valid``, written at the identifier's own length (``nl.bsn`` pads ``123456`` to
  nine digits: such a number is not taken for one) and, when written in groups, grouped as the
  module's ``format()`` groups it (``1112 22 333``, ``536-90-4399``; a date's digits are not);
* ``phone``: ``phonenumbers.PhoneNumberMatcher`` (``Leniency.VALID``) for each of ``phone_regions``
  (numbers written with ``+`` or ``00`` are recognised whatever the region).

**How far into a cell.** Each cell is searched as free text, so a value is found whether it is the
whole cell or inside a sentence (a ``notes`` column). Dates, times and IPv4 addresses are blanked
first. Numbers are read as runs of letter/digit groups joined by single spaces or hyphens
(``4111 1111 1111 1111``, ``DE89 3704 0044 0532 0130 00``, ``536-90-4399``, ``54362315-K``); every
sub-run of up to :data:`MAX_GROUPS` groups is tried, widest first, and a span one detector claims is
not offered to the next (order: email, iban, card, national ids, phone). A run glued by a hyphen to a
word (``APP-1a2b3c4d-000012345``, ``order-111222333``, a UUID's groups) is part of a longer code and
is not an identifier. Digits joined by ``.`` or ``,`` are amounts (``1,234,567.89``), so the BSN's
dotted ``1112.22.333`` is not recognised (``111222333`` and ``1112 22 333`` are). Cards and IBANs
written in groups must be in fours (Amex 4-6-5, Diners 4-6-4). A cell with fewer than
:data:`MIN_DIGITS` digits and no ``@`` is not searched at all.

**What is not flagged, by design.** A check digit is what tells an identifier from any other number:

* a bare run of digits is taken as a national identifier only when the scheme has a check digit
  (changing the last digit makes it invalid); ``us.ssn`` has none, so an SSN is recognised only as
  written ``536-90-4399``, never as ``536904399``, which any 9-digit id matches;
* a phone number without ``+``/``00`` or a trunk prefix (``020 ...``, ``06 ...``) counts only when
  grouped as its region groups numbers (``Leniency.STRICT_GROUPING``: ``(650) 253-0000``,
  ``612 345 678``); a bare run of digits (``6502530000``) is not told from an id and is not flagged;
* a column of other numbers passes a check by chance (a random number is Luhn-valid 1 time in 10;
  with the issuer prefixes about 3 in 100 random 16-digit numbers still pass; 1 in 11 passes the
  BSN's test; a third of 9-digit amounts grouped ``737 333 834`` are valid Spanish phone numbers as
  written). The chance rule: where at least :data:`CHANCE_MIN_ROWS` rows of a column hold a number
  (bare, or grouped by spaces/hyphens) of one length and fewer than :data:`CHANCE_MAX_SHARE` of them
  pass a detector, that column holds numbers of some other scheme, and the ones that pass as bare or
  prefix-less numbers are counted as ``chance``, not flagged. Real personal data passes its check
  nearly always. What it costs: identifiers mixed into a column of other numbers of the same length
  (more of those than of them) are not told from chance hits; numbers written as such (a grouped
  card number, an IBAN, a formatted SSN, ``+44 ...``, an e-mail address) are never discounted;
  fewer than :data:`CHANCE_MIN_ROWS` numbers (one note in a batch) are always counted.

**What comes out.** A :class:`ScreeningReport`: per column and detector the number of rows flagged,
the rows flagged in any column, the ``chance`` counts, and the columns skipped and why. No value,
fragment or position of one is kept, logged, raised or shown; the report's text and ``repr`` hold
column names, detector names and counts only. The libraries' errors (whose messages may quote the
value) are caught here and dropped.

**Speed.** Each column is reduced to its distinct values first (a category to its categories), the
digit and ``@`` filters run vectorised in Arrow, and only the values they keep are searched, one by
one, in Python (python-stdnum, phonenumbers and email-validator check one value at a time).
Measured with the default config on 2 shared cores (Python 3.11): 100,000 rows x 4 text columns
(a 3-level category; a unique demo id ``APP-<hex>-<9 digits>``; a unique 16-digit reference; a
unique free-text note with amounts, dates and references, 2 % of notes holding an e-mail address,
card or phone number) in **5.5-6.7 s** (three runs): 0.1 s for the category, 2.5 s for the ids,
1.6 s for the references, 1.5 s for the notes; the whole demo batch (100,000 rows, its id and three category
features) in 2.8 s; an hour of 1,000 logged predictions (request ids, three category features,
model name and version) in 0.025 s. Cost grows with the distinct values that hold 6+ digits, not
with rows: a low-cardinality column costs next to nothing.
"""

from __future__ import annotations

import importlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from include.config import ScreeningConfig

log = logging.getLogger(__name__)

EMAIL, IBAN, CARD, NATIONAL_ID, PHONE = "email", "iban", "card", "national_id", "phone"
DETECTORS = (EMAIL, IBAN, CARD, NATIONAL_ID, PHONE)  # also the order in which they claim spans
MIN_DIGITS = 6  # a cell with fewer digits (and no "@") holds none of the numbers looked for
MAX_GROUPS = 8  # widest run of space/hyphen-separated groups tried as one number
CHANCE_MIN_ROWS = 20  # rows holding a number (bare or grouped) of one length before the chance rule applies
CHANCE_MAX_SHARE = 0.5  # fewer passing than this share of them: the passing ones are chance

_16_19 = frozenset(range(16, 20))
#: Issuer prefixes and lengths of payment card networks: (lowest prefix, highest prefix, lengths).
#: From Wikipedia's "Payment card number" IIN table (ISO/IEC 7812). Left out: UATP (prefix 1) and
#: GPN (50, 56, 58, 60-63), whose one- and two-digit prefixes would cover too many other numbers.
CARD_RANGES: tuple[tuple[int, int, frozenset[int]], ...] = (
    (4, 4, frozenset({13, 16, 19})),  # Visa
    (51, 55, frozenset({16})), (2221, 2720, frozenset({16})),  # Mastercard
    (34, 34, frozenset({15})), (37, 37, frozenset({15})),  # American Express
    (6011, 6011, _16_19), (644, 649, _16_19), (65, 65, _16_19), (622126, 622925, _16_19),  # Discover
    (62, 62, _16_19),  # UnionPay
    (36, 36, frozenset(range(14, 20))), (300, 305, frozenset(range(14, 20))), (3095, 3095, _16_19),
    (38, 39, _16_19),  # Diners Club
    (3528, 3589, _16_19),  # JCB
    *((p, p, frozenset(range(12, 20))) for p in (5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763)),  # Maestro
    (2200, 2204, _16_19),  # Mir
    (60, 60, frozenset({16})), (81, 82, frozenset({16})), (508, 508, frozenset({16})),
    (353, 353, frozenset({16})), (356, 356, frozenset({16})),  # RuPay
    (9792, 9792, frozenset({16})),  # Troy
    (506099, 506198, frozenset({16, 18, 19})), (507865, 507964, frozenset({16, 18, 19})),
    (650002, 650027, frozenset({16, 18, 19})),  # Verve
)

_CARD_GROUPINGS = ([4, 6, 5], [4, 6, 4])  # American Express, Diners Club; the others are written in fours
_TEXT_KINDS = frozenset("OSU")  # numpy kinds of object, bytes and str columns
_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
# Runs of letter/digit groups joined by one space or hyphen: groups holding a digit, with letter-only
# groups of up to 4 letters between or around them (IBAN bank codes, a DNI's letter, "Card 4111 ...").
# Not after or before "<digit>." / "<digit>," (amounts, dates).
_DGROUP = r"[^\W\d_]*\d[^\W_]*"
_LGROUP = r"[^\W\d_]{1,4}"
_CHUNK = re.compile(
    rf"(?<![\w])(?<!\w-)(?<!\d[.,])(?:{_LGROUP}[ -])?{_DGROUP}(?:[ -](?:{_LGROUP}[ -])?{_DGROUP})*(?:[ -]{_LGROUP})?"
    rf"(?![\w])(?!-\w)(?![.,]\d)"
)
_GROUP = re.compile(r"[^\W_]+")
_GROUP_CHARS = re.compile(r"[\W_]+")  # what is not part of a group (separators)
_BARE_DIGITS = re.compile(r"(?<![\w-])(?<!\d[.,])\d+(?![\w-])(?![.,]\d)")
# Runs of 6+ digits that may be a phone number; :func:`_phone_like` keeps the ones written as one.
_PHONE_HINT = re.compile(r"(?<![\w-])[+(]?\d(?:[ ()\-./]{0,2}\d){5,}")
_HYPHEN_BEFORE = re.compile(r"\w-$")
_HYPHEN_AFTER = re.compile(r"-\w")
# Dates and times (2026-01-05, 05/01/2026, 05.01.26, 2026-01-05T10:00:00Z) and IPv4 addresses: blanked before
# numbers are read.
_NOT_IDENTIFIERS = re.compile(
    r"(?<![\w.,-])(?:(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4})"
    r"(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?(?![\w-])"
    r"|\d{1,3}(?:\.\d{1,3}){3}(?![\w.]))"
)


# --- the report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnScreen:
    """One column's result: ``rows`` (non-null rows screened), ``flagged_rows`` (rows any detector
    flagged), ``counts`` (detector -> rows it flagged, only those > 0) and ``chance`` (detector -> rows
    that passed its check in a column of other numbers, not flagged; see the module docstring)."""

    column: str
    rows: int
    flagged_rows: int
    counts: dict[str, int] = field(default_factory=dict)
    chance: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ScreeningReport:
    """What :func:`screen_frame` found: counts per column and detector, never values.

    ``rows``: the frame's rows; ``flagged_rows``: rows flagged in at least one column; ``columns``: one
    :class:`ColumnScreen` per column screened (in the frame's order); ``detectors``: what was looked for
    (``national_id.<module>`` per module); ``skipped``: configured columns not screened, and why;
    ``seconds``: wall time.
    """

    rows: int
    flagged_rows: int
    columns: tuple[ColumnScreen, ...]
    detectors: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def flagged(self) -> list[tuple[str, str, int]]:
        """``(column, detector, rows)`` for every column and detector that flagged rows, in column order."""
        return [(c.column, d, n) for c in self.columns for d, n in c.counts.items()]

    @property
    def flagged_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.flagged_rows]

    def exceeds(self, max_flagged_rows: int) -> bool:
        """Whether more than ``max_flagged_rows`` rows were flagged (``compliance.screening.max_flagged_rows``)."""
        return self.flagged_rows > max_flagged_rows

    def summary(self) -> str:
        """One line: ``personal data in 12 of 1500 rows: notes: email 10 rows, phone 2 rows; ...`` (counts only)."""
        if not self.flagged_rows:
            return f"no personal data found in {self.rows} rows ({len(self.columns)} columns screened)"
        parts = [f"{c.column}: " + ", ".join(f"{d} {n} row{'' if n == 1 else 's'}" for d, n in c.counts.items())
                 for c in self.columns if c.counts]
        return f"personal data in {self.flagged_rows} of {self.rows} rows: " + "; ".join(parts)

    def as_dict(self) -> dict:
        """JSON-ready (counts and names only)."""
        return {
            "rows": self.rows, "flagged_rows": self.flagged_rows, "detectors": list(self.detectors),
            "columns": {c.column: {"rows": c.rows, "flagged_rows": c.flagged_rows, "counts": dict(c.counts),
                                   "chance": dict(c.chance)} for c in self.columns},
            "skipped": dict(self.skipped), "seconds": round(self.seconds, 3),
        }


# --- the screen ----------------------------------------------------------------------------------


def screen_frame(
    df: pd.DataFrame, config: ScreeningConfig | None = None, *, columns: Sequence[str] | None = None
) -> ScreeningReport:
    """Screen ``df`` for personal data as ``config`` (``compliance.screening``; default: its defaults) says.

    ``columns`` (else ``config.columns``; none = every ``object``/``string``/``category`` column of
    ``df``): the columns screened. A named column that is absent, or neither text nor integers, is
    skipped and named in ``skipped``; integer columns named explicitly are screened as their digits.
    ``config.enabled`` is not consulted here (callers decide). Returns a :class:`ScreeningReport` with
    counts only. Cost: see the module docstring (about 6 s for 100,000 rows x 4 text columns of mostly distinct
    values; milliseconds for an hour of inference data).
    """
    config = config or ScreeningConfig()
    started = time.perf_counter()
    detectors = _Detectors(config)
    named = list(columns) if columns is not None else config.columns
    skipped: dict[str, str] = {}
    if named is None:
        chosen = [c for c in df.columns if _is_text(df[c])]
    else:
        chosen = []
        for name in named:
            if name not in df.columns:
                skipped[name] = "not in the data"
            elif not (_is_text(df[name]) or pd.api.types.is_integer_dtype(df[name].dtype)):
                skipped[name] = f"not text or integers ({df[name].dtype})"
            else:
                chosen.append(name)
    any_row = np.zeros(len(df), dtype=bool)
    results = []
    for name in chosen:
        result, row_mask = _screen_column(str(name), df[name], detectors)
        results.append(result)
        any_row |= row_mask
    report = ScreeningReport(rows=len(df), flagged_rows=int(any_row.sum()), columns=tuple(results),
                             detectors=detectors.names, skipped=skipped, seconds=time.perf_counter() - started)
    log.info("Screened %s rows x %s columns for personal data in %.2f s: %s", report.rows, len(results),
             report.seconds, report.summary())
    return report


def _is_text(series: pd.Series) -> bool:
    dtype = series.dtype
    return isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype) or dtype.kind in _TEXT_KINDS


def _screen_column(name: str, series: pd.Series, detectors: _Detectors) -> tuple[ColumnScreen, np.ndarray]:
    """One column: its distinct values are searched, their counts give the rows. Returns the result and
    the rows it flagged (a boolean array over the column)."""
    codes, uniques = _distinct(series)
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques)) if len(uniques) else np.zeros(0, dtype=np.int64)
    texts = pa.array(uniques, type=pa.string())
    digits = pc.count_substring_regex(texts, r"\d").to_numpy(zero_copy_only=False)
    at = pc.match_substring(texts, "@").to_numpy(zero_copy_only=False)
    cells = {int(i): detectors.scan(uniques[i]) for i in np.flatnonzero((digits >= MIN_DIGITS) | at)}
    flagged, chance = _decide(cells, counts, detectors.names)
    flagged_unique = np.zeros(len(uniques), dtype=bool)
    per_detector = {}
    for d in detectors.names:
        hit = np.fromiter(flagged[d], dtype=np.int64)
        flagged_unique[hit] = True
        if len(hit):
            per_detector[d] = int(counts[hit].sum())
    row_mask = np.zeros(len(series), dtype=bool)
    present = codes >= 0
    row_mask[present] = flagged_unique[codes[present]]
    return ColumnScreen(name, int(present.sum()), int(row_mask.sum()), per_detector, chance), row_mask


def _distinct(series: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Codes per row (-1 for null) and the distinct values as text."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = np.asarray(series.cat.codes, dtype=np.int64)
        return codes, [str(v) for v in series.cat.categories]
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int64), [str(v) for v in uniques]


def _decide(cells: dict[int, _Cell], counts: np.ndarray, names: Sequence[str]) -> tuple[dict[str, list[int]], dict[str, int]]:
    """Which distinct values each detector flags, after the chance rule (module docstring): weak matches of a
    length that at least CHANCE_MIN_ROWS rows hold a number of, of which fewer than CHANCE_MAX_SHARE pass the
    detector, are chance. Returns detector -> indices of flagged values, and detector -> rows discounted."""
    holding: dict[int, int] = {}  # length -> rows holding a number (bare or grouped) of that length
    passing: dict[tuple[str, int], int] = {}  # (detector, length) -> rows whose only matches are weak ones of it
    flagged: dict[str, list[int]] = {d: [] for d in names}
    weak: list[tuple[int, str, set[int]]] = []
    for i, cell in cells.items():
        rows = int(counts[i])
        for length in cell.numbers:
            holding[length] = holding.get(length, 0) + rows
        for d in cell.strong:
            flagged[d].append(i)
        for d, lengths in cell.weak.items():
            if d not in cell.strong:
                weak.append((i, d, lengths))
                for length in lengths:
                    passing[d, length] = passing.get((d, length), 0) + rows
    by_chance = {key for key, rows in passing.items()
                 if holding.get(key[1], 0) >= CHANCE_MIN_ROWS and rows < CHANCE_MAX_SHARE * holding[key[1]]}
    chance: dict[str, int] = {}
    for i, d, lengths in weak:
        if all((d, length) in by_chance for length in lengths):
            chance[d] = chance.get(d, 0) + int(counts[i])
        else:
            flagged[d].append(i)
    return flagged, chance


# --- the detectors -------------------------------------------------------------------------------


@dataclass
class _Cell:
    """What :meth:`_Detectors.scan` found in one value. ``strong``: detectors with a match written as such
    (an ``@``, letters, card or identifier groups, ``+``/``00`` or a trunk prefix with groups); ``weak``:
    detector -> digit counts of its matches that could be any number (a bare run of digits, a phone number
    without a prefix); ``numbers``: the digit counts (>= MIN_DIGITS) of the value's numbers, bare or grouped
    by spaces/hyphens (the chance rule's population)."""

    strong: set[str] = field(default_factory=set)
    weak: dict[str, set[int]] = field(default_factory=dict)
    numbers: set[int] = field(default_factory=set)

    def add(self, detector: str, bare_length: int | None) -> None:
        if bare_length is None:
            self.strong.add(detector)
        else:
            self.weak.setdefault(detector, set()).add(bare_length)


class _Detectors:
    """The configured detectors, applied to one value by :meth:`scan`."""

    def __init__(self, config: ScreeningConfig) -> None:
        wanted = set(config.detectors)
        self.email = EMAIL in wanted
        self.iban = IBAN in wanted
        self.card = CARD in wanted
        self.national = []
        if NATIONAL_ID in wanted:
            modules = [(m, importlib.import_module(f"stdnum.{m}")) for m in config.national_ids]
            self.national = [(f"{NATIONAL_ID}.{m}", module, _possible_lengths(module)) for m, module in modules]
        self._check_digit: dict[tuple[str, int], bool] = {}  # (detector, length) -> the scheme has a check digit
        self.phone_regions = tuple(config.phone_regions) if PHONE in wanted else ()
        self.names = tuple([d for d in (EMAIL, IBAN, CARD) if d in wanted] + [n for n, _, _ in self.national]
                           + ([PHONE] if PHONE in wanted else []))
        if self.email:
            from email_validator import validate_email

            self._validate_email = validate_email
        if self.iban:
            from stdnum import iban

            self._iban_valid = iban.is_valid
        if self.card:
            from stdnum import luhn

            self._luhn_valid = luhn.is_valid
        if self.phone_regions:
            import phonenumbers

            self._phonenumbers = phonenumbers
            self._international = frozenset({phonenumbers.CountryCodeSource.FROM_NUMBER_WITH_PLUS_SIGN,
                                             phonenumbers.CountryCodeSource.FROM_NUMBER_WITH_IDD})

    def scan(self, text: str) -> _Cell:
        """What ``text`` holds; each detector claims its spans from the later ones (e-mail, dates, numbers, phones)."""
        cell = _Cell()
        if text.isascii() and text.isdigit():  # the common case of an id column: one bare number, nothing else
            return self._bare(text, cell)
        if self.email and "@" in text:
            text = self._emails(text, cell)
        text = _NOT_IDENTIFIERS.sub(lambda m: " " * len(m.group()), text)
        if self.iban or self.card or self.national:
            text = self._numbers(text, cell)
        else:
            cell.numbers.update(len(m.group()) for m in _BARE_DIGITS.finditer(text) if len(m.group()) >= MIN_DIGITS)
        if self.phone_regions and any(_phone_like(m.group()) for m in _PHONE_HINT.finditer(text)):
            self._phones(text, cell)
        return cell

    def _bare(self, digits: str, cell: _Cell) -> _Cell:
        """A value that is one run of digits: as :meth:`_numbers` and :meth:`_phones` would find, faster."""
        cell.numbers.add(len(digits))
        found = self._number(digits, [digits]) if self.iban or self.card or self.national else None
        if found:
            cell.add(found[0], len(digits))
        elif self.phone_regions and digits[0] == "0":  # only a trunk prefix makes bare digits a phone number
            self._phones(digits, cell)
        return cell

    def _emails(self, text: str, cell: _Cell) -> str:
        spans = []
        for match in _EMAIL.finditer(text):
            candidate = match.group().rstrip(".-")
            try:
                self._validate_email(candidate, check_deliverability=False)
            except Exception:  # EmailNotValidError (or anything else): not an address; its message may quote it
                continue
            spans.append((match.start(), match.start() + len(candidate)))
        if spans:
            cell.add(EMAIL, None)
        return _blank(text, spans)

    def _numbers(self, text: str, cell: _Cell) -> str:
        spans: list[tuple[int, int]] = []
        for chunk in _CHUNK.finditer(text):
            groups = [(chunk.start() + m.start(), chunk.start() + m.end()) for m in _GROUP.finditer(chunk.group())]
            glued = [text[end] == "-" for _, end in groups[:-1]]  # group k and k+1 joined by a hyphen
            for k, (start, end) in enumerate(groups):
                if end - start >= MIN_DIGITS and text[start:end].isdigit() and not _glued(glued, k, k):
                    cell.numbers.add(end - start)
            written = sum(end - start for start, end in groups)  # a number grouped by spaces/hyphens: 737 333 834
            if len(groups) > 1 and written >= MIN_DIGITS and chunk.group().replace(" ", "").replace("-", "").isdigit():
                cell.numbers.add(written)
            claimed: list[tuple[int, int]] = []
            for width in range(min(MAX_GROUPS, len(groups)), 0, -1):
                for first in range(len(groups) - width + 1):
                    last = first + width - 1
                    start, end = groups[first][0], groups[last][1]
                    if _glued(glued, first, last) or any(s < end and start < e for s, e in claimed):
                        continue
                    parts = [text[s:e] for s, e in groups[first:last + 1]]
                    found = self._number(text[start:end], parts)
                    if found:
                        name, bare = found
                        cell.add(name, len(parts[0]) if bare else None)
                        claimed.append((start, end))
            spans += claimed
        return _blank(text, spans)

    def _number(self, written: str, parts: list[str]) -> tuple[str, bool] | None:
        """Which detector recognises one run of groups (``written`` as in the text, ``parts`` its groups), and
        whether it is a bare run of digits; None when none does."""
        compact = "".join(parts).upper()
        n = len(compact)
        digits_only = compact.isascii() and compact.isdigit()
        if (n if digits_only else sum(map(str.isdigit, compact))) < MIN_DIGITS:
            return None
        bare = digits_only and len(parts) == 1
        sizes = [len(p) for p in parts]
        if self.iban and 15 <= n <= 34 and compact[:2].isalpha() and compact[2:4].isdigit() \
                and (len(parts) == 1 or _in_fours(sizes)) and _safe(self._iban_valid, compact):
            return IBAN, False
        if self.card and 12 <= n <= 19 and digits_only and (len(parts) == 1 or sizes in _CARD_GROUPINGS
                                                            or _in_fours(sizes)) \
                and _card_prefix(compact) and _safe(self._luhn_valid, compact):
            return CARD, bare
        if n <= 24:
            for name, module, possible in self.national:
                if n not in possible or (bare and self._check_digit.get((name, n)) is False):
                    continue
                if not _safe(module.is_valid, written) or not _full_length(module, written, n):
                    continue
                if len(parts) > 1 and not _grouped_as_formatted(module, compact, parts):
                    continue  # e.g. a date's digits, grouped unlike the identifier
                if bare:
                    key = (name, n)
                    if key not in self._check_digit:  # a property of the scheme and length: asked once
                        self._check_digit[key] = _has_check_digit(module.is_valid, compact)
                    if not self._check_digit[key]:
                        continue  # no check digit (us.ssn): a bare run of digits is any number of that length
                return name, bare
        return None

    def _phones(self, text: str, cell: _Cell) -> None:
        pn = self._phonenumbers
        for region in self.phone_regions:
            try:
                matches = list(pn.PhoneNumberMatcher(text, region, leniency=pn.Leniency.VALID))
            except Exception:  # the library's errors may quote the text: never raised, never logged
                continue
            for match in matches:
                if _HYPHEN_BEFORE.search(text, 0, match.start) or _HYPHEN_AFTER.match(text, match.end):
                    continue  # glued by a hyphen to a word: part of a longer code (a UUID's first group)
                try:
                    written = self._phone_written(match, region)
                except Exception:  # as above
                    continue
                if written is None:
                    cell.add(PHONE, None)
                    return
                if written:
                    cell.add(PHONE, written)

    def _phone_written(self, match, region: str) -> int | None:
        """How a phone number is written: None when as a phone number (``+44 ..``, ``0044 ..``, ``020 7946 ..``:
        a prefix and groups), its digit count when it could be any number (bare digits with a trunk prefix,
        ``0612345678``; or no prefix, grouped as the region groups numbers, ``612 345 678``), 0 when neither
        (bare digits, or groups the region does not use: ``219.34.225.196``)."""
        pn = self._phonenumbers
        raw = match.raw_string.strip()
        digits = re.sub(r"\D", "", raw)
        source = pn.parse(raw, region, keep_raw_input=True).country_code_source
        prefixed = source in self._international or (  # +44 / 0044, or a trunk prefix: 020, 06
            source == pn.CountryCodeSource.FROM_DEFAULT_COUNTRY and digits != pn.national_significant_number(match.number))
        grouped = not raw.isdigit()
        if prefixed:
            return None if grouped else len(digits)
        if grouped and any(m.raw_string == match.raw_string for m in pn.PhoneNumberMatcher(
                match.raw_string, region, leniency=pn.Leniency.STRICT_GROUPING)):
            return len(digits)
        return 0


def _in_fours(lengths: list[int]) -> bool:
    """Groups of four and a last one of one to four: how card numbers and IBANs are written."""
    return all(n == 4 for n in lengths[:-1]) and 1 <= lengths[-1] <= 4


def _glued(glued: list[bool], first: int, last: int) -> bool:
    """Whether groups ``first..last`` are joined by a hyphen to a group outside them (part of a longer code)."""
    return (first > 0 and glued[first - 1]) or (last < len(glued) and glued[last])


def _phone_like(run: str) -> bool:
    """A run of 6+ digits written as a phone number may be: starting with +, ( or 0, or in 3+ groups."""
    return run[0] in "+(0" or len(re.findall(r"[ ()\-./]+", run)) >= 2


def _full_length(module, written: str, n: int) -> bool:
    """Whether the module reads ``written`` as it is, without padding it (nl.bsn pads 123456 to 000123456)."""
    try:
        return len(_GROUP_CHARS.sub("", module.compact(written))) == n
    except Exception:  # python-stdnum's errors may quote the value: never raised, never logged
        return False


def _grouped_as_formatted(module, compact: str, parts: list[str]) -> bool:
    """Whether ``parts`` have the group lengths of the module's own ``format()`` (any grouping when it has none)."""
    fmt = getattr(module, "format", None)
    if fmt is None:
        return True
    try:
        formatted = fmt(module.compact(compact))
    except Exception:  # python-stdnum's errors may quote the value: never raised, never logged
        return False
    return [len(g) for g in _GROUP.findall(formatted)] == [len(p) for p in parts]


def _safe(check: Callable[[str], bool], value: str) -> bool:
    """``check(value)``, False on any error (python-stdnum's may quote the value)."""
    try:
        return bool(check(value))
    except Exception:  # python-stdnum's errors may quote the value: never raised, never logged
        return False


# CARD_RANGES as prefix text -> lengths, per prefix width (about 1,500 prefixes): one lookup per width.
_CARD_PREFIXES: dict[int, dict[str, frozenset[int]]] = {}
for _low, _high, _lengths in CARD_RANGES:
    for _prefix in range(_low, _high + 1):
        _known = _CARD_PREFIXES.setdefault(len(str(_low)), {})
        _known[str(_prefix)] = _known.get(str(_prefix), frozenset()) | _lengths


def _card_prefix(digits: str) -> bool:
    """Whether ``digits`` has the issuer prefix and length of a payment card network (:data:`CARD_RANGES`)."""
    n = len(digits)
    return any(n in prefixes.get(digits[:width], ()) for width, prefixes in _CARD_PREFIXES.items())


@cache
def _possible_lengths(module) -> frozenset[int]:
    """The compact lengths (5-24) for which ``module.validate`` does not refuse digits for their length alone.

    python-stdnum's modules check the length first and raise ``InvalidLength``; a length every probe is
    refused for is skipped without calling the (slow) module. A module that checks something else first
    is simply asked about every length.
    """
    from stdnum.exceptions import InvalidLength

    possible = set()
    for n in range(5, 25):
        for lead in "129":
            try:
                module.validate(lead + "0" * (n - 1))
            except InvalidLength:
                continue
            except Exception:  # any other refusal: the length itself may be fine
                pass
            possible.add(n)
            break
    return frozenset(possible)


def _has_check_digit(is_valid: Callable[[str], bool], digits: str) -> bool:
    """Whether changing the last digit of a valid ``digits`` makes it invalid (the scheme has a check digit)."""
    last = int(digits[-1])
    return not any(_safe(is_valid, f"{digits[:-1]}{(last + step) % 10}") for step in (1, 5))


def _blank(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """``text`` with ``spans`` replaced by spaces (claimed: no later detector sees them)."""
    for start, end in spans:
        text = text[:start] + " " * (end - start) + text[end:]
    return text
