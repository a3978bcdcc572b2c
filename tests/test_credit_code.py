"""统一社会信用代码 validation (GB 32100)."""

from __future__ import annotations

import pytest

from common.errors import InvalidInput
from registry.credit_code import ALPHABET, credit_check_character, is_valid_credit_code, normalize_credit_code

VALID = ["91110000600037341L", "9144030071526726XG"]


@pytest.mark.parametrize("code", VALID)
def test_published_examples_are_valid(code: str) -> None:
    assert is_valid_credit_code(code)
    assert credit_check_character(code[:17]) == code[17]


def test_lower_case_and_spaces_are_normalised() -> None:
    assert normalize_credit_code(" 9144030071526726xg ") == "9144030071526726XG"


@pytest.mark.parametrize("code", VALID)
def test_every_single_character_substitution_is_caught(code: str) -> None:
    for position in range(18):
        for char in ALPHABET:
            if char != code[position]:
                typo = code[:position] + char + code[position + 1 :]
                if position in range(2, 8) and not char.isdigit():
                    continue  # caught as a malformed county code instead, tested below
                assert not is_valid_credit_code(typo), typo


def test_errors_say_what_is_wrong() -> None:
    with pytest.raises(InvalidInput, match="17 characters; it must have 18"):
        normalize_credit_code("91110000600037341")
    with pytest.raises(InvalidInput, match="'I'"):
        normalize_credit_code("91110000600037341I")
    with pytest.raises(InvalidInput, match="check character"):
        normalize_credit_code("91110000600037341M")
    with pytest.raises(InvalidInput, match="county code"):
        normalize_credit_code("9111A000600037341L")
