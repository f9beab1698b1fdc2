"""Input conversion: ids, paths, bytes, file objects, PIL images; type sniffing."""

from __future__ import annotations

import io
import pathlib

import pytest
from conftest import jpeg_bytes, png_bytes
from PIL import Image as PILImage
from PIL import ImageFilter

import scenario_uni1 as uni1
from scenario_uni1 import _inputs
from scenario_uni1._inputs import (
    MAX_INLINE_UPLOAD,
    Upload,
    is_asset_id,
    ref_list,
    resolve,
    sniff_mime,
)


def pil_bytes(fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (8, 8), (10, 20, 30)).save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize(
    "fmt, mime",
    [
        ("PNG", "image/png"),
        ("JPEG", "image/jpeg"),
        ("GIF", "image/gif"),
        ("WEBP", "image/webp"),
        ("TIFF", "image/tiff"),
    ],
)
def test_sniff_real_files(fmt, mime):
    assert sniff_mime(pil_bytes(fmt)) == mime


def test_sniff_tiff_big_endian():
    assert sniff_mime(b"MM\x00*\x00\x00\x00\x08" + b"\0" * 16) == "image/tiff"


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    payload = major + b"\0\0\0\0" + b"".join(compatible)
    return (8 + len(payload)).to_bytes(4, "big") + b"ftyp" + payload + b"\0" * 16


@pytest.mark.parametrize(
    "data, mime",
    [
        (_ftyp(b"avif", b"mif1", b"miaf"), "image/avif"),
        (_ftyp(b"mif1", b"avif"), "image/avif"),
        (_ftyp(b"heic", b"mif1"), "image/heic"),
        (_ftyp(b"mif1", b"heic"), "image/heic"),
        (_ftyp(b"mif1", b"miaf"), "image/heif"),
        (_ftyp(b"isom", b"mp41"), None),  # an MP4 video
    ],
)
def test_sniff_isobmff(data, mime):
    assert sniff_mime(data) == mime


@pytest.mark.parametrize(
    "text",
    [
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>',
        (
            '\ufeff<?xml version="1.0"?>\n<!-- made by hand -->\n<!DOCTYPE svg PUBLIC "-//W3C//DTD '
            'SVG 1.1//EN" "x.dtd">\n<svg viewBox="0 0 1 1"/>'
        ),
        "  \n<svg>\n</svg>",
    ],
)
def test_sniff_svg(text):
    assert sniff_mime(text.encode()) == "image/svg+xml"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello world",
        b"<html><body><svg></svg></body></html>",
        b"<svgx>",
        b"%PDF-1.7",
        b"BM\x00\x00",  # BMP: not in the API's list
        b"\x89PN",
    ],
)
def test_sniff_rejects_other_data(data):
    assert sniff_mime(data) is None


@pytest.mark.parametrize(
    "value, ok",
    [
        ("asset_abc123", True),
        ("asset_A-b_9", True),
        ("asset_", False),
        ("asset_has space", False),
        ("asset_dot.png", False),
        ("job_abc", False),
        ("asset_" + "a" * 121, True),
        ("asset_" + "a" * 122, False),
    ],
)
def test_is_asset_id(value, ok):
    assert is_asset_id(value) is ok


def test_resolve_asset_id_is_kept():
    assert resolve("asset_abc", "source") == "asset_abc"


def test_resolve_path_str_and_pathlike(tmp_path):
    data = png_bytes()
    path = tmp_path / "pic.png"
    path.write_bytes(data)
    for value in (str(path), path):
        item = resolve(value, "source")
        assert isinstance(item, Upload)
        assert item.data == data and item.mime_type == "image/png" and item.name == "pic.png"


def test_resolve_path_named_like_an_asset_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "asset_photo.jpg").write_bytes(jpeg_bytes())
    item = resolve("asset_photo.jpg", "source")
    assert isinstance(item, Upload) and item.mime_type == "image/jpeg"


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_resolve_bytes_like(kind):
    data = jpeg_bytes()
    item = resolve(kind(data), "image_refs[0]")
    assert item.data == data and isinstance(item.data, bytes)
    assert item.mime_type == "image/jpeg" and item.name.endswith(".jpg")


def test_resolve_binary_file_object(tmp_path):
    data = png_bytes()
    path = tmp_path / "f.png"
    path.write_bytes(data)
    with open(path, "rb") as f:
        item = resolve(f, "source")
    assert item.data == data and item.name == "f.png"
    anonymous = resolve(io.BytesIO(data), "source")
    assert anonymous.data == data and anonymous.name == "upload.png"


def test_resolve_text_file_object_is_rejected():
    with pytest.raises(uni1.InvalidRequestError, match="binary|'rb'"):
        resolve(io.StringIO("hello"), "source")


def test_resolve_pil_image():
    im = PILImage.new("RGBA", (5, 7), (1, 2, 3, 4))
    item = resolve(im, "source")
    assert item.mime_type == "image/png"
    back = PILImage.open(io.BytesIO(item.data))
    assert back.size == (5, 7) and back.getpixel((0, 0)) == (1, 2, 3, 4)


def test_resolve_large_pil_photo_falls_back_to_jpeg(monkeypatch):
    # A blurred noise picture: about 20 kB as PNG, under 10 kB as JPEG.
    im = PILImage.effect_noise((200, 200), 40).convert("RGB").filter(ImageFilter.GaussianBlur(2))
    monkeypatch.setattr(_inputs, "MAX_INLINE_UPLOAD", 12_000)
    item = resolve(im, "source")
    assert item.mime_type == "image/jpeg" and len(item.data) <= 12_000
    assert item.name.endswith(".jpg")
    monkeypatch.setattr(_inputs, "MAX_INLINE_UPLOAD", 30_000)
    assert resolve(im, "source").mime_type == "image/png"  # PNG whenever it fits


@pytest.mark.parametrize("value", [42, 3.5, None, object(), ["asset_x"], {"a": 1}])
def test_resolve_wrong_types(value):
    with pytest.raises(uni1.InvalidRequestError, match="must be"):
        resolve(value, "image_refs[0]")


def test_resolve_missing_path_mentions_it(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(uni1.InvalidRequestError, match="nope.png"):
        resolve(str(missing), "source")


def test_resolve_empty_and_unknown_data(tmp_path):
    with pytest.raises(uni1.InvalidRequestError, match="empty"):
        resolve(b"", "source")
    with pytest.raises(uni1.InvalidRequestError, match="PNG, JPEG"):
        resolve(b"not an image", "source")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(uni1.InvalidRequestError, match="empty"):
        resolve(empty, "source")


def test_resolve_too_large_file_is_not_read(tmp_path, monkeypatch):
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.write(png_bytes())
        f.truncate(MAX_INLINE_UPLOAD + 1)
    real_open = open
    reads = []

    class Spy:
        def __init__(self, f):
            self._f = f

        def read(self, n=-1):
            assert n != -1 and n <= 64 * 1024, "a file over the limit must not be read whole"
            data = self._f.read(n)
            reads.append(len(data))
            return data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

        def __getattr__(self, name):
            return getattr(self._f, name)

    monkeypatch.setattr("builtins.open", lambda *a, **k: Spy(real_open(*a, **k)))
    item = resolve(big, "source")
    # large: uploaded straight from the file through multipart, only its head read
    assert item.large and item.data is None and item.path == str(big)
    assert sum(reads) <= 64 * 1024


def test_exactly_the_limit_is_accepted():
    data = png_bytes()
    data += b"\0" * (MAX_INLINE_UPLOAD - len(data))
    small = resolve(data, "source")
    assert len(small.data) == MAX_INLINE_UPLOAD and not small.large
    assert resolve(data + b"\0", "source").large  # one byte more: multipart


@pytest.mark.parametrize(
    "value",
    ["asset_abc", b"\x89PNG", bytearray(b"x"), pathlib.Path("x.png"), io.BytesIO(b"x")],
)
def test_ref_list_refuses_single_values(value):
    with pytest.raises(uni1.InvalidRequestError, match="list or tuple"):
        ref_list(value)


def test_ref_list_accepts_sequences_and_iterables():
    assert ref_list(("asset_a", "asset_b")) == ["asset_a", "asset_b"]
    assert ref_list(["asset_a"]) == ["asset_a"]
    assert ref_list(x for x in ("asset_a",)) == ["asset_a"]
    assert ref_list(None) == [] and ref_list(()) == []
    with pytest.raises(uni1.InvalidRequestError):
        ref_list(12)
    with pytest.raises(uni1.InvalidRequestError, match="dict"):
        ref_list({"asset_a": 1})


def test_ref_list_refuses_pil_image():
    with pytest.raises(uni1.InvalidRequestError):
        ref_list(PILImage.new("RGB", (2, 2)))
