"""The smart code: check digit strength, parsing of what people type and scan, near misses."""

from __future__ import annotations

import random

import pytest

from common.errors import CheckDigitMismatch, InvalidCode
from registry.codes import SmartCode, mod11_10_check_digit, mod11_10_is_valid, near_misses, parse_code

SAMPLES = ["3205080101000001", "4403100118000123", "4403102105999999", "4403100114000000"]


def _random_codes(n: int) -> list[str]:
    rng = random.Random(7)
    out = []
    for _ in range(n):
        ident = f"440310{rng.choice(['0101', '0117', '0118', '2105'])}{rng.randrange(1_000_000):06d}"
        out.append(ident + mod11_10_check_digit(ident))
    return out


def test_known_check_digit_and_grouped_form() -> None:
    code = parse_code("3205080101000001")
    assert code.identifier == "3205080101000001"
    assert code.formatted == "320508-0101-000001-4"
    assert str(code) == "32050801010000014"


@pytest.mark.parametrize("full", _random_codes(40) + [s + mod11_10_check_digit(s) for s in SAMPLES])
def test_every_single_digit_error_is_detected(full: str) -> None:
    for position, original in enumerate(full):
        for replacement in "0123456789":
            if replacement != original:
                typo = full[:position] + replacement + full[position + 1 :]
                assert not mod11_10_is_valid(typo), typo


def test_adjacent_transpositions_are_detected_except_the_known_mod11_10_blind_spot() -> None:
    # ISO/IEC 7064 MOD 11,10 (GB/T 17710) catches every single-digit error but not every adjacent
    # transposition: a swap of two digits that differ by exactly 1 (mod 10) passes for one of the ten
    # internal states. The reference notes claim full coverage; this test pins down the real behaviour.
    detected = missed = 0
    for full in _random_codes(3000):
        for i in range(len(full) - 1):
            a, b = full[i], full[i + 1]
            if a == b:
                continue
            swapped = full[:i] + b + a + full[i + 2 :]
            if mod11_10_is_valid(swapped):
                missed += 1
                assert (int(a) - int(b)) % 10 in (1, 9), (full, swapped)
            else:
                detected += 1
    rate = detected / (detected + missed)
    assert 0.97 < rate < 1.0, rate


def test_transpositions_of_digits_further_apart_are_always_detected() -> None:
    for full in _random_codes(500):
        for i in range(len(full) - 1):
            a, b = full[i], full[i + 1]
            if (int(a) - int(b)) % 10 in (0, 1, 9):
                continue
            assert not mod11_10_is_valid(full[:i] + b + a + full[i + 2 :])


@pytest.mark.parametrize(
    "typed",
    [
        "440310-0118-000123-{c}",
        "440310 0118 000123 {c}",
        " 4403100118000123{c} ",
        "４４０３１０－０１１８－０００１２３－{c}",  # full-width, as typed on a Chinese IME
        "https://smartcode.example.gov.cn/c/440310-0118-000123-{c}?s=abc",
        "440310.0118.000123.{c}",
    ],
)
def test_parse_accepts_separators_fullwidth_and_label_urls(typed: str) -> None:
    check = mod11_10_check_digit("4403100118000123")
    code = parse_code(typed.format(c=check))
    assert (code.county, code.class_code, code.serial) == ("440310", "0118", 123)


def test_sixteen_digit_identifier_gains_its_check_digit() -> None:
    code = parse_code("4403100118000123")
    assert str(code) == "4403100118000123" + mod11_10_check_digit("4403100118000123")


def test_sixteen_digits_refused_when_a_full_code_is_required() -> None:
    with pytest.raises(InvalidCode, match="expected 17"):
        parse_code("4403100118000123", allow_identifier=False)


def test_mistyped_code_is_told_apart_from_malformed() -> None:
    good = str(parse_code("4403100118000123"))
    wrong = good[:-1] + str((int(good[-1]) + 1) % 10)
    with pytest.raises(CheckDigitMismatch, match="check digit"):
        parse_code(wrong)
    with pytest.raises(InvalidCode, match="has 15 digits") as malformed:
        parse_code("440310011800012")
    assert not isinstance(malformed.value, CheckDigitMismatch)
    with pytest.raises(InvalidCode, match="contains 'A'"):
        parse_code("44031A0118000123")
    with pytest.raises(InvalidCode, match="empty"):
        parse_code("  - ")


def test_near_misses_contain_the_original_of_a_typo() -> None:
    good = str(parse_code("4403100118000123"))
    typo = good[:8] + ("9" if good[8] != "9" else "8") + good[9:]
    assert good in near_misses(typo)
    assert all(mod11_10_is_valid(c) for c in near_misses(typo))


def test_code_parts_are_validated() -> None:
    with pytest.raises(InvalidCode):
        SmartCode("44031", "0118", 1)
    with pytest.raises(InvalidCode):
        SmartCode("440310", "0118", 1_000_000)
