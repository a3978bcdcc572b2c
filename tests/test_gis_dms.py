"""Tests of gis.dms.parse_coordinate."""

from __future__ import annotations

import pytest

from common.errors import InvalidInput
from gis.dms import parse_coordinate

LON_DMS = 114 + 21 / 60 + 30.5 / 3600  # 114°21'30.5"
LAT_DM = 22 + 41 / 60  # 22°41'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("114.3584", 114.3584),
        ("-114.5", -114.5),
        ("+22.5", 22.5),
        (" 114.3 ", 114.3),
        ("114°21'30.5\"", LON_DMS),
        ("114°21′30.5″", LON_DMS),
        ("114° 21′ 30.5″", LON_DMS),
        ("114 21 30.5", LON_DMS),
        ("114:21:30.5", LON_DMS),
        ("114d21m30.5s", LON_DMS),
        ("114D21M30.5S", LON_DMS),
        ("114deg 21min 30.5sec", LON_DMS),
        ("E114°21'30.5\"", LON_DMS),
        ("114°21'30.5\"E", LON_DMS),
        ("114°21'30.5''", LON_DMS),  # two single quotes for seconds
        ("114º21'30.5\"", LON_DMS),  # ordinal indicator typed for the degree sign
        ("东经114度21分30.5秒", LON_DMS),
        ("22°41'N", LAT_DM),
        ("北纬22度41分", LAT_DM),
        ("22°41.5'", 22 + 41.5 / 60),
        ("114.358°", 114.358),
        ("114.358°E", 114.358),
        ("１１４°２１′", 114 + 21 / 60),  # full-width digits
        ("１１４．５", 114.5),
        ("114,5", 114.5),  # decimal comma
        ("２２，５", 22.5),
        ("22°41,5'", 22 + 41.5 / 60),
        ('114°30"', 114 + 30 / 3600),  # degrees and seconds, no minutes
    ],
)
def test_valid_spellings(text: str, expected: float) -> None:
    assert parse_coordinate(text) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("22°41'S", -LAT_DM),
        ("S 22°41'", -LAT_DM),
        ("南纬22度41分", -LAT_DM),
        ("74°0'W", -74.0),
        ("W74.5", -74.5),
        ("22°41'30S", -(LAT_DM + 30 / 3600)),  # S after seconds without a mark: south
        ("22d41m30sS", -(LAT_DM + 30 / 3600)),  # letter style: first s is seconds, second is south
        ("-22.5", -22.5),
    ],
)
def test_south_and_west_are_negative(text: str, expected: float) -> None:
    assert parse_coordinate(text) == pytest.approx(expected, abs=1e-12)


def test_numbers_pass_through_with_range_check() -> None:
    assert parse_coordinate(114.35) == 114.35
    assert parse_coordinate(22, axis="lat") == 22.0
    with pytest.raises(InvalidInput):
        parse_coordinate(95.0, axis="lat")
    with pytest.raises(InvalidInput):
        parse_coordinate(float("nan"))
    with pytest.raises(InvalidInput):
        parse_coordinate(True)  # bools are ints in Python, not coordinates


def test_axis_ranges() -> None:
    assert parse_coordinate("114.3", axis="lon") == 114.3
    with pytest.raises(InvalidInput, match="latitude"):
        parse_coordinate("114.3", axis="lat")
    with pytest.raises(InvalidInput, match="longitude"):
        parse_coordinate("181", axis="lon")
    with pytest.raises(InvalidInput):
        parse_coordinate("95°N")  # the hemisphere makes it a latitude


def test_hemisphere_must_fit_the_axis() -> None:
    assert parse_coordinate("22°41'N", axis="lat") == pytest.approx(LAT_DM)
    with pytest.raises(InvalidInput, match="does not fit a longitude"):
        parse_coordinate("22°41'N", axis="lon")
    with pytest.raises(InvalidInput, match="does not fit a latitude"):
        parse_coordinate("114°E", axis="lat")


def test_unknown_axis_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        parse_coordinate("1", axis="x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("114°60'", "minutes must be below 60"),
        ("114°21'60\"", "seconds must be below 60"),
        ("114 75 00", "minutes must be below 60"),
        ("abc", "unexpected"),
        ("", "empty"),
        ("   ", "empty"),
        ("N", "no number"),
        ("114,21,30", "ambiguous comma"),
        ("114.5, 22.7", "ambiguous comma"),
        ("114,5.3", "ambiguous comma"),
        ("114.5°21'", "only the last"),
        ("21'", "degrees are missing"),
        ("114°°", "does not follow a number"),
        ("1 2 3 4", "more than three"),
        ("30\" 21' 114°", "out of order"),
        ("-22°N", "minus sign and a hemisphere"),
        ("N22 S", "more than one hemisphere"),
        ("22N 5", "numbers after the hemisphere"),
        ("1e5", "numbers after the hemisphere"),  # no scientific notation
        ("114.5.3", "unexpected"),
    ],
)
def test_errors_name_the_text(text: str, why: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_coordinate(text)
    assert repr(text) in caught.value.message
    assert why in caught.value.message
