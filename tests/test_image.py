"""The Image type: sizes from headers, atomic save, notebook hooks, Pillow."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import sys

import pytest
from conftest import assert_no_temp_files, jpeg_bytes, png_bytes
from PIL import Image as PILImage

import scenario_uni1 as uni1
from scenario_uni1._image import image_size


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
@pytest.mark.parametrize("size", [(1, 1), (640, 360), (123, 4567)])
def test_size_from_header(fmt, size):
    buf = io.BytesIO()
    PILImage.new("RGB", size, (1, 2, 3)).save(buf, format=fmt)
    image = uni1.Image(buf.getvalue())
    assert (image.width, image.height) == size
    assert image_size(buf.getvalue()) == size


@pytest.mark.parametrize("lossless", [True, False])
def test_webp_sizes(lossless):
    buf = io.BytesIO()
    PILImage.new("RGB", (37, 91)).save(buf, format="WEBP", lossless=lossless)
    assert image_size(buf.getvalue()) == (37, 91)


def test_progressive_jpeg_and_exif_before_frame():
    buf = io.BytesIO()
    im = PILImage.new("RGB", (300, 200), (9, 9, 9))
    exif = PILImage.Exif()
    exif[0x010F] = "maker" * 50
    im.save(buf, format="JPEG", progressive=True, exif=exif)
    assert uni1.Image(buf.getvalue()).width == 300
    assert uni1.Image(buf.getvalue()).height == 200


def test_metadata_size_wins_and_unknown_stays_none():
    data = png_bytes(10, 20)
    assert uni1.Image(data, "image/png", "asset_a", 1000, 2000).width == 1000
    junk = uni1.Image(b"\x89PNG\r\n\x1a\n", "image/png", "asset_b")
    assert junk.width is None and junk.height is None
    assert image_size(b"\xff\xd8\xff\xd9") is None


def test_attributes_and_mime_sniffed_when_missing():
    data = jpeg_bytes(16, 8)
    image = uni1.Image(data, asset_id="asset_x")
    assert image.data == data and image.mime_type == "image/jpeg" and image.asset_id == "asset_x"
    assert image.extension == "jpg"
    assert bytes(image) == data and len(image) == len(data)
    with pytest.raises(AttributeError):
        image.data = b"other"  # read-only
    with pytest.raises(AttributeError):
        image.extra = 1  # __slots__


def test_repr_png_and_jpeg():
    png = uni1.Image(png_bytes(), "image/png", "asset_p")
    jpg = uni1.Image(jpeg_bytes(), "image/jpeg", "asset_j")
    assert png._repr_png_() == png.data and png._repr_jpeg_() is None
    assert jpg._repr_jpeg_() == jpg.data and jpg._repr_png_() is None


def test_repr_eq_hash_pickle():
    data = png_bytes(64, 32)
    a = uni1.Image(data, "image/png", "asset_a")
    b = uni1.Image(data, "image/png", "asset_a")
    c = uni1.Image(data, "image/png", "asset_c")
    assert a == b and hash(a) == hash(b) and a != c
    assert a != data
    r = repr(a)
    assert "asset_a" in r and "64x32" in r and "image/png" in r and str(len(data)) in r
    assert len(r) < 200
    assert pickle.loads(pickle.dumps(a)) == a


def test_save_to_file_path(tmp_path):
    image = uni1.Image(png_bytes(), "image/png", "asset_s")
    target = tmp_path / "out.png"
    result = image.save(target)
    assert result == target and target.read_bytes() == image.data
    assert_no_temp_files(tmp_path)
    mode = target.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_save_to_directory_uses_asset_id(tmp_path):
    png = uni1.Image(png_bytes(), "image/png", "asset_dirpng")
    jpg = uni1.Image(jpeg_bytes(), "image/jpeg", "asset_dirjpg")
    assert png.save(tmp_path) == tmp_path / "asset_dirpng.png"
    assert jpg.save(str(tmp_path)) == tmp_path / "asset_dirjpg.jpg"
    new_dir = str(tmp_path / "new") + os.sep
    assert png.save(new_dir) == tmp_path / "new" / "asset_dirpng.png"
    assert (tmp_path / "asset_dirjpg.jpg").read_bytes() == jpg.data


def test_save_overwrites_atomically(tmp_path, monkeypatch):
    target = tmp_path / "x.png"
    target.write_bytes(b"old contents")
    image = uni1.Image(png_bytes(), "image/png", "asset_o")

    def failing_replace(src, dst):
        # The temporary file is complete and beside the target at this point.
        assert os.path.dirname(src) == str(tmp_path)
        with open(src, "rb") as f:
            assert f.read() == image.data
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk on fire"):
        image.save(target)
    assert target.read_bytes() == b"old contents"
    assert_no_temp_files(tmp_path)
    monkeypatch.undo()
    image.save(target)
    assert target.read_bytes() == image.data
    with pytest.raises(FileExistsError):
        image.save(target, overwrite=False)


def test_save_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    image = uni1.Image(png_bytes(), "image/png", "asset_k")
    real_fsync = os.fsync

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        image.save(tmp_path / "k.png")
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert os.listdir(tmp_path) == []


def test_to_pil():
    image = uni1.Image(png_bytes(31, 17), "image/png", "asset_pil")
    pil = image.to_pil()
    assert isinstance(pil, PILImage.Image)
    assert pil.size == (31, 17) and pil.format == "PNG"


def test_to_pil_without_pillow(monkeypatch):
    real_import = builtins.__import__

    def no_pil(name, *args, **kwargs):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("No module named 'PIL'")
        return real_import(name, *args, **kwargs)

    image = uni1.Image(png_bytes(), "image/png", "asset_nopil")
    monkeypatch.setattr(builtins, "__import__", no_pil)
    for mod in [m for m in sys.modules if m == "PIL" or m.startswith("PIL.")]:
        monkeypatch.delitem(sys.modules, mod)
    with pytest.raises(ImportError, match="Pillow"):
        image.to_pil()
    assert image.width == 64  # everything else works without Pillow
