"""Signed label URLs: what a label encodes, how it is checked, and that it stays a small QR."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from common.errors import ConfigurationError
from common.settings import LabelSettings
from qr.matrix import MAX_VERSION, qr_matrix, qr_version
from qr.signing import LabelKeys, LabelVerdict, add_key, label_url, load_keys, parse_signature, sign, verify

CODE = "44031001180001234"
DEFAULT_BASE = LabelSettings().public_base_url


@pytest.fixture
def keys(tmp_path: Path) -> LabelKeys:
    return load_keys(tmp_path / "label-keys")


def test_label_url_shape_and_round_trip(keys: LabelKeys) -> None:
    url = label_url(CODE, keys, "https://sc.example.cn/")
    assert url.startswith(f"https://sc.example.cn/c/{CODE}?s=1.")
    signature = url.split("?s=", 1)[1]
    assert verify(CODE, signature, keys).status is LabelVerdict.VALID
    # Deterministic: the same key and edition give the same URL, so a reprint matches the old label.
    assert label_url(CODE, keys, "https://sc.example.cn") == url


def test_signature_is_bound_to_the_code_and_the_edition(keys: LabelKeys) -> None:
    first = sign(CODE, keys)
    assert verify("44031001180001241", first, keys).status is LabelVerdict.FAILED
    second = sign(CODE, keys, edition=2)
    assert second.startswith("1.2.") and second.split(".")[-1] != first.split(".")[-1]
    assert verify(CODE, second, keys) == verify(CODE, second, keys)
    assert verify(CODE, second, keys).edition == 2
    # Moving the MAC of edition 1 under an edition-2 prefix does not verify.
    forged = "1.2." + first.split(".")[-1]
    assert verify(CODE, forged, keys).status is LabelVerdict.FAILED


def test_missing_malformed_and_tampered_signatures(keys: LabelKeys) -> None:
    assert verify(CODE, None, keys).status is LabelVerdict.MISSING
    assert verify(CODE, "  ", keys).status is LabelVerdict.MISSING
    assert verify(CODE, "garbage", keys).status is LabelVerdict.FAILED
    good = sign(CODE, keys)
    flipped = good[:-1] + ("A" if good[-1] != "A" else "B")
    assert verify(CODE, flipped, keys).status is LabelVerdict.FAILED
    # Case does not matter: someone may type the signature from a damaged label.
    assert verify(CODE, good.lower(), keys).valid
    assert parse_signature(good) == ("1", 1)


def test_rotation_keeps_old_labels_valid_and_a_removed_key_fails_them(tmp_path: Path) -> None:
    path = tmp_path / "label-keys"
    old = load_keys(path)
    old_signature = sign(CODE, old)
    assert add_key(path) == "2"
    rotated = load_keys(path)
    assert rotated.current == "2"
    assert sign(CODE, rotated).startswith("2.")
    assert verify(CODE, old_signature, rotated).valid
    # Retiring key 1 (its line removed) voids every label it signed: unknown key id.
    lines = [line for line in path.read_text().splitlines() if not line.startswith("1 ")]
    path.write_text("\n".join(lines) + "\n")
    verdict = verify(CODE, old_signature, load_keys(path))
    assert verdict.status is LabelVerdict.FAILED and "unknown" in verdict.reason
    # Another deployment's key does not verify this one's labels.
    assert not verify(CODE, old_signature, load_keys(tmp_path / "other-keys")).valid


def test_key_file_is_private_and_a_bad_current_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "label-keys"
    load_keys(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(ConfigurationError):
        load_keys(path, current_key_id="7")
    path.write_text("1 c2hvcnQ\n")
    with pytest.raises(ConfigurationError, match="shorter than 16 bytes"):
        load_keys(path)


def test_default_url_fits_version_5_at_q_and_decodes(keys: LabelKeys) -> None:
    url = label_url(CODE, keys, DEFAULT_BASE, edition=12)
    assert qr_version(url) <= MAX_VERSION
    # The documented longest base URL (30 characters, lower case; key id < 10, edition < 100) still fits.
    assert qr_version(label_url(CODE, keys, "https://smartcode.pingshan.com", edition=99)) <= MAX_VERSION
    found = _decode(url)
    assert found.text == url
    assert found.ec_level in ("Q", "H")
    assert verify(CODE, found.text.split("?s=")[1], keys).valid


def _decode(text: str) -> zxingcpp.Barcode:
    matrix = qr_matrix(text)
    scale, quiet = 6, 4
    size = (len(matrix) + 2 * quiet) * scale
    image = Image.new("L", (size, size), 255)
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            if dark:
                x0, y0 = (x + quiet) * scale, (y + quiet) * scale
                image.paste(0, (x0, y0, x0 + scale, y0 + scale))
    (found,) = zxingcpp.read_barcodes(image)
    return found


def test_a_signature_with_a_run_of_digits_still_fits_version_5() -> None:
    # A greedy split made "32243" a numeric segment of its own and pushed this label to version 6.
    url = f"https://smartcode.pingshan.com/c/{CODE}?s=1.99.TNES32243FAA"
    assert qr_version(url) <= MAX_VERSION
    assert _decode(url).text == url


@pytest.mark.parametrize(
    "text",
    [
        "0123456789" * 30,
        "HTTPS://SC.EXAMPLE.CN/C/44031001180001234",
        "https://sc.example.cn/c/44031001180001234?s=1.ABCDEF234567&n=井盖 №7",
        "a1b22c333d4444E55555F" * 12,
    ],
)
def test_any_text_round_trips_through_the_segmenter(text: str) -> None:
    assert _decode(text).text == text
