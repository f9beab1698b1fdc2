"""Images for the emulator: synthetic outputs, encoders and format sniffing.

Standard library only. Pillow is used for JPEG and for format conversion when it
is importable; without it a small baseline JPEG encoder below takes over, so the
emulator serves real, decodable images on a machine with nothing installed.

Bodies are served from memory as `Body` objects: a list of read-only segments
that a response streams slice by slice, so a padded 256 MiB PNG is one shared
1 MiB block of zeros referenced many times, not 256 MiB per image.
"""

from __future__ import annotations

import io
import math
import random
import re
import struct
import threading
import zlib

__all__ = [
    "ASPECT_RATIOS",
    "MIME_BY_FORMAT",
    "Body",
    "convert_image",
    "dimensions_for_ratio",
    "dimensions_for_size",
    "encode_jpeg_pure",
    "encode_png",
    "generated_image",
    "pixels_rgb",
    "sniff_image",
]

ASPECT_RATIOS = ("1:3", "9:16", "2:3", "3:4", "1:1", "4:3", "3:2", "16:9", "3:1")

MIME_BY_FORMAT = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
    "avif": "image/avif",
    "heic": "image/heic",
    "svg": "image/svg+xml",
}
EXT_BY_FORMAT = {"jpeg": "jpg", "svg": "svg"}

_PADDING_BLOCK = memoryview(bytes(1 << 20))


class Body:
    """An immutable byte string kept as segments (bytes or memoryviews).

    `len(body)` is the total size; `chunks(size)` yields memoryviews no larger than
    `size` without copying; `slice(start, end)` is a cheap view for Range answers.
    """

    __slots__ = ("length", "segments")

    def __init__(self, segments):
        self.segments = [memoryview(s) if not isinstance(s, memoryview) else s for s in segments]
        self.length = sum(len(s) for s in self.segments)

    def __len__(self) -> int:
        return self.length

    def slice(self, start: int, end: int) -> Body:
        """Bytes [start, end) as a new Body sharing this one's memory."""
        out = []
        pos = 0
        for seg in self.segments:
            n = len(seg)
            if pos + n > start and pos < end:
                a = max(start - pos, 0)
                b = min(end - pos, n)
                out.append(seg[a:b])
            pos += n
            if pos >= end:
                break
        return Body(out)

    def chunks(self, size: int = 1 << 20):
        for seg in self.segments:
            n = len(seg)
            for a in range(0, n, size):
                yield seg[a : a + size]

    def tobytes(self) -> bytes:
        if len(self.segments) == 1:
            return self.segments[0].tobytes()
        return b"".join(self.segments)


# --------------------------------------------------------------------------- sizes


def dimensions_for_ratio(ratio: str, long_side: int) -> tuple[int, int]:
    a, b = (int(x) for x in ratio.split(":"))
    return dimensions_for_size(a, b, long_side)


def dimensions_for_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """Scale (width, height) so that the longer side is `long_side`."""
    width = max(int(width), 1)
    height = max(int(height), 1)
    if width >= height:
        return long_side, max(1, round(long_side * height / width))
    return max(1, round(long_side * width / height)), long_side


# --------------------------------------------------------------------------- pixels


def _shift_table(s: int) -> bytes:
    s &= 255
    return bytes(range(s, 256)) + bytes(range(s))


def pixels_rgb(width: int, height: int, seed: int) -> bytes:
    """Packed RGB rows of a seeded pattern: gradients plus diagonal stripes.

    Built a row at a time with bytes.translate, so a 256 px image takes about a
    millisecond in pure Python.
    """
    rng = random.Random(seed)
    off_r, off_g, off_b = rng.randrange(256), rng.randrange(256), rng.randrange(256)
    ka, kb = rng.randrange(1, 9), rng.randrange(1, 9)
    row_r = bytes(((x * 256) // width + off_r) & 255 for x in range(width))
    row_b = bytes((x * ka + off_b) & 255 for x in range(width))
    out = bytearray(3 * width * height)
    row = bytearray(3 * width)
    stride = 3 * width
    for y in range(height):
        g = ((y * 256) // height + off_g) & 255
        row[0::3] = row_r
        row[1::3] = bytes((g,)) * width
        row[2::3] = row_b.translate(_shift_table(y * kb))
        out[y * stride : (y + 1) * stride] = row
    return bytes(out)


# --------------------------------------------------------------------------- PNG


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(width: int, height: int, rgb: bytes) -> bytes:
    stride = 3 * width
    raw = bytearray()
    for y in range(height):
        raw += b"\x00"
        raw += rgb[y * stride : (y + 1) * stride]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(bytes(raw), 6))
        + _png_chunk(b"IEND", b"")
    )


_pad_crc_cache: dict[int, int] = {}
_PAD_TYPE = b"emPd"  # ancillary, private, safe to copy


def _padding_segments(n: int) -> list:
    """Segments of n zero bytes, sharing one 1 MiB block."""
    full, rest = divmod(n, len(_PADDING_BLOCK))
    segs = [_PADDING_BLOCK] * full
    if rest:
        segs.append(_PADDING_BLOCK[:rest])
    return segs


def _padded_png(png: bytes, total: int) -> Body:
    """The PNG with an ancillary chunk of zeros before IEND so that it is `total` bytes.

    The chunk sits after IDAT, so decoders that stop at the image data open it fast.
    """
    data_len = total - len(png) - 12
    if data_len < 0:
        return Body([png])
    crc = _pad_crc_cache.get(data_len)
    if crc is None:
        crc = zlib.crc32(_PAD_TYPE)
        for seg in _padding_segments(data_len):
            crc = zlib.crc32(seg, crc)
        _pad_crc_cache[data_len] = crc
    head, iend = png[:-12], png[-12:]
    return Body(
        [head, struct.pack(">I", data_len) + _PAD_TYPE]
        + _padding_segments(data_len)
        + [struct.pack(">I", crc) + iend]
    )


# --------------------------------------------------------------------------- JPEG

_ZIGZAG: list[int] = []
for _s in range(15):
    _cells = [(r, _s - r) for r in range(8) if 0 <= _s - r < 8]
    if _s % 2 == 0:
        _cells.reverse()
    _ZIGZAG.extend(r * 8 + c for r, c in _cells)
del _s, _cells

_Q_LUMA = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]  # fmt: skip
_Q_CHROMA = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
] + [99] * 32  # fmt: skip

# Huffman tables of JPEG Annex K.3: code-length counts, then symbols.
_DC_LUMA = ([0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], list(range(12)))
_DC_CHROMA = ([0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0], list(range(12)))
_AC_LUMA = (
    [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D],
    bytes.fromhex(
        "01020300041105122131410613516107227114328191a1082342b1c11552d1f0"
        "2433627282090a161718191a25262728292a3435363738393a434445464748494a"
        "535455565758595a636465666768696a737475767778797a838485868788898a"
        "92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6"
        "c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9fa"
    ),
)
_AC_CHROMA = (
    [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77],
    bytes.fromhex(
        "000102031104052131061241510761711322328108144291a1b1c109233352f0"
        "156272d10a162434e125f11718191a262728292a35363738393a434445464748"
        "494a535455565758595a636465666768696a737475767778797a828384858687"
        "88898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3"
        "c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9fa"
    ),
)


def _huffman_codes(spec) -> dict[int, tuple[int, int]]:
    counts, symbols = spec
    codes: dict[int, tuple[int, int]] = {}
    code = 0
    k = 0
    for length in range(1, 17):
        for _ in range(counts[length - 1]):
            codes[symbols[k]] = (code, length)
            code += 1
            k += 1
        code <<= 1
    return codes


def _scaled_quant(base, quality: int) -> list[int]:
    quality = min(max(quality, 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return [min(max((q * scale + 50) // 100, 1), 255) for q in base]


_DCT = [
    [
        (math.sqrt(0.5) if u == 0 else 1.0) * 0.5 * math.cos((2 * x + 1) * u * math.pi / 16)
        for x in range(8)
    ]
    for u in range(8)
]


class _BitWriter:
    __slots__ = ("acc", "n", "out")

    def __init__(self):
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def write(self, value: int, length: int) -> None:
        self.acc = (self.acc << length) | (value & ((1 << length) - 1))
        self.n += length
        while self.n >= 8:
            self.n -= 8
            byte = (self.acc >> self.n) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(0)
        self.acc &= (1 << self.n) - 1

    def flush(self) -> bytes:
        if self.n:
            self.write((1 << (8 - self.n)) - 1, 8 - self.n)
        return bytes(self.out)


def _encode_block(block, quant, pred, dc_codes, ac_codes, bits: _BitWriter) -> int:
    """Forward DCT, quantize and entropy-code one 8x8 block; returns the new DC predictor."""
    dct = _DCT
    rows = [block[y * 8 : y * 8 + 8] for y in range(8)]
    tmp = [[sum(a * b for a, b in zip(row, dct[u])) for u in range(8)] for row in rows]
    coef = [0] * 64
    for v in range(8):
        dv = dct[v]
        for u in range(8):
            s = 0.0
            for y in range(8):
                s += dv[y] * tmp[y][u]
            i = v * 8 + u
            coef[i] = round(s / quant[i])
    dc = coef[0]
    diff = dc - pred
    size = abs(diff).bit_length()
    code, length = dc_codes[size]
    bits.write(code, length)
    if size:
        bits.write(diff if diff > 0 else diff + (1 << size) - 1, size)
    run = 0
    for k in range(1, 64):
        c = coef[_ZIGZAG[k]]
        if c == 0:
            run += 1
            continue
        while run > 15:
            code, length = ac_codes[0xF0]
            bits.write(code, length)
            run -= 16
        size = abs(c).bit_length()
        code, length = ac_codes[(run << 4) | size]
        bits.write(code, length)
        bits.write(c if c > 0 else c + (1 << size) - 1, size)
        run = 0
    if run:
        code, length = ac_codes[0x00]
        bits.write(code, length)
    return dc


def encode_jpeg_pure(width: int, height: int, rgb: bytes, quality: int = 90) -> bytes:
    """A baseline JPEG (YCbCr 4:4:4, Annex K tables) written in pure Python.

    Used only when Pillow is not importable. A 256 px image takes a few tenths of
    a second; results are cached by the caller.
    """
    ql = _scaled_quant(_Q_LUMA, quality)
    qc = _scaled_quant(_Q_CHROMA, quality)
    codes = (
        (_huffman_codes(_DC_LUMA), _huffman_codes(_AC_LUMA), ql),
        (_huffman_codes(_DC_CHROMA), _huffman_codes(_AC_CHROMA), qc),
        (_huffman_codes(_DC_CHROMA), _huffman_codes(_AC_CHROMA), qc),
    )
    # Colour conversion, centred on zero.
    n = width * height
    r, g, b = rgb[0::3], rgb[1::3], rgb[2::3]
    planes = (
        [0.299 * r[i] + 0.587 * g[i] + 0.114 * b[i] - 128.0 for i in range(n)],
        [-0.168736 * r[i] - 0.331264 * g[i] + 0.5 * b[i] for i in range(n)],
        [0.5 * r[i] - 0.418688 * g[i] - 0.081312 * b[i] for i in range(n)],
    )
    bits = _BitWriter()
    preds = [0, 0, 0]
    for by in range(0, height, 8):
        ys = [min(by + j, height - 1) * width for j in range(8)]
        for bx in range(0, width, 8):
            xs = [min(bx + i, width - 1) for i in range(8)]
            for c in range(3):
                plane = planes[c]
                block = [plane[yo + x] for yo in ys for x in xs]
                dc_codes, ac_codes, quant = codes[c]
                preds[c] = _encode_block(block, quant, preds[c], dc_codes, ac_codes, bits)
    scan = bits.flush()

    def segment(marker: int, payload: bytes) -> bytes:
        return struct.pack(">HH", marker, len(payload) + 2) + payload

    dqt = bytes([0]) + bytes(ql[_ZIGZAG[k]] for k in range(64))
    dqt += bytes([1]) + bytes(qc[_ZIGZAG[k]] for k in range(64))
    sof = struct.pack(">BHHB", 8, height, width, 3) + bytes([1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1])
    dht = b""
    for tc_th, spec in ((0x00, _DC_LUMA), (0x10, _AC_LUMA), (0x01, _DC_CHROMA), (0x11, _AC_CHROMA)):
        dht += bytes([tc_th]) + bytes(spec[0]) + bytes(spec[1])
    sos = bytes([3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0])
    return (
        b"\xff\xd8"
        + segment(0xFFE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
        + segment(0xFFDB, dqt)
        + segment(0xFFC0, sof)
        + segment(0xFFC4, dht)
        + segment(0xFFDA, sos)
        + scan
        + b"\xff\xd9"
    )


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        return None
    return Image


def encode_jpeg(width: int, height: int, rgb: bytes, *, use_pillow: bool = True) -> bytes:
    image_mod = _pillow() if use_pillow else None
    if image_mod is None:
        return encode_jpeg_pure(width, height, rgb)
    buf = io.BytesIO()
    image_mod.frombytes("RGB", (width, height), rgb).save(buf, "JPEG", quality=90)
    return buf.getvalue()


# --------------------------------------------------------------------------- cache

_cache_lock = threading.Lock()
_image_cache: dict[tuple, bytes] = {}
_CACHE_MAX = 1024
SEED_VARIANTS = 256  # distinct patterns per (size, format); bounds the cache


def generated_image(
    width: int, height: int, fmt: str, seed: int, pad_to: int | None = None
) -> Body:
    """The seeded synthetic image as a Body, cached per (size, format, seed).

    pad_to makes a PNG exactly that many bytes (a JPEG gets zeros after EOI,
    which decoders ignore).
    """
    key = (width, height, fmt, seed % SEED_VARIANTS)
    with _cache_lock:
        data = _image_cache.get(key)
    if data is None:
        rgb = pixels_rgb(width, height, key[3])
        data = encode_png(width, height, rgb) if fmt == "png" else encode_jpeg(width, height, rgb)
        with _cache_lock:
            if len(_image_cache) >= _CACHE_MAX:
                _image_cache.pop(next(iter(_image_cache)))
            _image_cache[key] = data
    if pad_to and pad_to > len(data):
        if fmt == "png":
            return _padded_png(data, pad_to)
        return Body([data] + _padding_segments(pad_to - len(data)))
    return Body([data])


def convert_image(data: bytes, fmt: str) -> bytes | None:
    """Convert encoded image bytes to fmt with Pillow; None when that is impossible."""
    image_mod = _pillow()
    if image_mod is None:
        return None
    try:
        img = image_mod.open(io.BytesIO(data))
        img.load()
        if fmt in ("jpeg", "bmp") and img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        buf = io.BytesIO()
        img.save(buf, fmt.upper())
        return buf.getvalue()
    except (OSError, ValueError, KeyError):  # no codec for it in this Pillow build
        return None


# --------------------------------------------------------------------------- sniffing


def _jpeg_size(data: bytes):
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (seg_len,) = struct.unpack_from(">H", data, i + 2)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > n:
                return None
            h, w = struct.unpack_from(">HH", data, i + 5)
            return w, h
        if marker == 0xDA:
            return None
        i += 2 + seg_len
    return None


def _webp_size(data: bytes):
    kind = data[12:16]
    if kind == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack_from("<HH", data, 26)
        return w & 0x3FFF, h & 0x3FFF
    if kind == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        (v,) = struct.unpack_from("<I", data, 21)
        return (v & 0x3FFF) + 1, ((v >> 14) & 0x3FFF) + 1
    if kind == b"VP8X" and len(data) >= 30:
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    return None


def _tiff_size(data: bytes):
    order = "<" if data[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack_from(order + "I", data, 4)
        (count,) = struct.unpack_from(order + "H", data, ifd)
        w = h = None
        for k in range(count):
            tag, typ, _cnt = struct.unpack_from(order + "HHI", data, ifd + 2 + 12 * k)
            fmt = order + ("H" if typ == 3 else "I")
            (value,) = struct.unpack_from(fmt, data, ifd + 2 + 12 * k + 8)
            if tag == 256:
                w = value
            elif tag == 257:
                h = value
        return (w, h) if w and h else None
    except struct.error:
        return None


def _bmff_size(data: bytes):
    i = data.find(b"ispe")
    if i < 0 or i + 16 > len(data):
        return None
    return struct.unpack_from(">II", data, i + 8)


_SVG_DIM = re.compile(rb'\b(width|height)\s*=\s*["\']\s*([0-9.]+)')
_SVG_VIEWBOX = re.compile(
    rb'viewBox\s*=\s*["\']\s*[-0-9.]+[ ,]+[-0-9.]+[ ,]+([0-9.]+)[ ,]+([0-9.]+)'
)


def _svg_size(data: bytes):
    head = data[:4096]
    dims = {k: float(v) for k, v in _SVG_DIM.findall(head)}
    if b"width" in dims and b"height" in dims:
        return round(dims[b"width"]), round(dims[b"height"])
    m = _SVG_VIEWBOX.search(head)
    if m:
        return round(float(m.group(1))), round(float(m.group(2)))
    return 0, 0


def sniff_image(data: bytes):
    """(format, width, height) read from the file header, or None if not an image."""
    size = None
    fmt = None
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        fmt, size = "png", struct.unpack_from(">II", data, 16)
    elif data[:3] == b"\xff\xd8\xff":
        fmt, size = "jpeg", _jpeg_size(data)
    elif data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        fmt, size = "gif", struct.unpack_from("<HH", data, 6)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        fmt, size = "webp", _webp_size(data)
    elif data[:2] == b"BM" and len(data) >= 26:
        w, h = struct.unpack_from("<ii", data, 18)
        fmt, size = "bmp", (w, abs(h))
    elif data[:4] in (b"II*\x00", b"MM\x00*"):
        fmt, size = "tiff", _tiff_size(data)
    elif data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            fmt = "avif"
        elif brand in (b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis"):
            fmt = "heic"
        if fmt:
            size = _bmff_size(data)
    else:
        head = data[:1024].lstrip()
        if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:4096]):
            fmt, size = "svg", _svg_size(data)
    if fmt is None or size is None:
        return None
    w, h = size
    if fmt != "svg" and (w <= 0 or h <= 0):
        return None
    return fmt, int(w), int(h)
