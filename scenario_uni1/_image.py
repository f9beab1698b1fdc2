"""Image: a generated picture held in memory."""

import os

from ._inputs import extension_for, sniff_mime


def _png_size(data: bytes) -> tuple[int, int] | None:
    # The IHDR chunk comes first: width and height at bytes 16..24.
    if len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None


# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share
# the range but are not frames.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header seen
            return None
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in _SOF_MARKERS:
            if i + 9 > n:
                return None
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width, height
        if length < 2:
            return None
        i += 2 + length
    return None


def _gif_size(data: bytes) -> tuple[int, int] | None:
    if len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and len(data) >= 30:
        return (
            int.from_bytes(data[26:28], "little") & 0x3FFF,
            int.from_bytes(data[28:30], "little") & 0x3FFF,
        )
    return None


_SIZE_PARSERS = {
    "image/png": _png_size,
    "image/jpeg": _jpeg_size,
    "image/gif": _gif_size,
    "image/webp": _webp_size,
}


def image_size(data: bytes, mime_type: str | None = None) -> tuple[int, int] | None:
    """(width, height) read from the image's header, or None when unknown."""
    mime_type = mime_type or sniff_mime(data)
    parser = _SIZE_PARSERS.get(mime_type or "")
    return parser(data) if parser else None


class Image:
    """A generated image in memory.

    ``data`` holds the encoded file (PNG or JPEG) exactly as the server sent it.
    ``width`` and ``height`` come from the asset's metadata, or from the file's
    own header when the server gave none.
    """

    __slots__ = ("_asset_id", "_data", "_height", "_mime_type", "_width")

    def __init__(
        self,
        data: bytes,
        mime_type: str | None = None,
        asset_id: str | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> None:
        if not isinstance(data, bytes):
            data = bytes(data)
        self._data = data
        self._mime_type = mime_type or sniff_mime(data) or "application/octet-stream"
        self._asset_id = asset_id
        self._width = width or None
        self._height = height or None
        if self._width is None or self._height is None:
            size = image_size(data, self._mime_type)
            if size is not None:
                self._width, self._height = size

    @property
    def data(self) -> bytes:
        return self._data

    @property
    def mime_type(self) -> str:
        return self._mime_type

    @property
    def asset_id(self) -> str | None:
        return self._asset_id

    @property
    def width(self) -> int | None:
        return self._width

    @property
    def height(self) -> int | None:
        return self._height

    @property
    def extension(self) -> str:
        """The file extension for this image's type, without the dot ("png", "jpg")."""
        return extension_for(self._mime_type)

    def save(self, path: str | os.PathLike = ".", *, overwrite: bool = True):
        """Write the image to path, atomically; returns the final pathlib.Path.

        A directory path (an existing one, or one ending with a separator)
        saves as ``<dir>/<asset_id>.<ext>``. The bytes go to a temporary file in
        the same directory, which is then renamed over the target, so a reader
        never sees a half-written file.
        """
        from pathlib import Path

        target = os.fspath(path)
        if isinstance(target, bytes):
            target = os.fsdecode(target)
        if os.path.isdir(target) or target.endswith(os.sep):
            os.makedirs(target, exist_ok=True)
            target = os.path.join(target, f"{self._asset_id or 'image'}.{self.extension}")
        if not overwrite and os.path.exists(target):
            raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
        directory = os.path.dirname(os.path.abspath(target))
        import tempfile

        fd, tmp = tempfile.mkstemp(
            dir=directory, prefix="." + os.path.basename(target) + ".", suffix=".part"
        )
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self._data)
                f.flush()
                os.fsync(f.fileno())
            # mkstemp creates the file 0600; give it the mode a plain open() would.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return Path(target)

    def to_pil(self):
        """The image as a PIL.Image.Image (needs Pillow)."""
        try:
            from PIL import Image as PILImage
        except ImportError:
            raise ImportError(
                "Image.to_pil() needs Pillow: pip install 'scenario_uni1[pil]' (or pillow)"
            ) from None
        import io

        image = PILImage.open(io.BytesIO(self._data))
        image.load()
        return image

    def _repr_png_(self) -> bytes | None:
        return self._data if self._mime_type == "image/png" else None

    def _repr_jpeg_(self) -> bytes | None:
        return self._data if self._mime_type == "image/jpeg" else None

    def __bytes__(self) -> bytes:
        return self._data

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        size = f"{self._width}x{self._height}" if self._width and self._height else "size unknown"
        return (
            f"<Image asset_id={self._asset_id!r} {self._mime_type} {size}, {len(self._data)} bytes>"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Image):
            return NotImplemented
        return (
            self._asset_id == other._asset_id
            and self._mime_type == other._mime_type
            and self._data == other._data
        )

    def __hash__(self) -> int:
        return hash((self._asset_id, self._mime_type, self._data))

    def __reduce__(self):
        return (Image, (self._data, self._mime_type, self._asset_id, self._width, self._height))


def image_from_fields(
    data: bytes,
    mime_type: str | None = None,
    asset_id: str | None = None,
    width: int | None = None,
    height: int | None = None,
) -> Image:
    """An Image of the fields the binding returns for fetched bytes (Job.images,
    Generation.result)."""
    if mime_type:
        # Trust the bytes over a generic or missing Content-Type.
        sniffed = sniff_mime(data)
        if sniffed and mime_type not in _KNOWN_MIMES:
            mime_type = sniffed
    return Image(data, mime_type, asset_id, width, height)


_KNOWN_MIMES = frozenset(
    (
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/tiff",
        "image/heic",
        "image/heif",
        "image/svg+xml",
    )
)
