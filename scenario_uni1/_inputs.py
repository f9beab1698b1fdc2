"""Turning what users pass as images into something the API accepts.

An input is an asset id (kept as is), a path, bytes, a binary file object or a
PIL image (read into memory, then uploaded once). Everything here runs before
any request is sent, so a bad input never costs a request, let alone a job.
"""

import os

from . import _core

# The contract: small images go inline (base64 in JSON) up to 3.5 MB raw; the
# multipart flow for larger files is a later issue.
MAX_INLINE_UPLOAD = 3_500_000

_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_ID_MAX = 127  # UNI1_ID_MAX - 1

_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/avif": "avif",
    "image/tiff": "tiff",
    "image/heic": "heic",
    "image/heif": "heif",
    "image/svg+xml": "svg",
}

_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs")
_HEIF_GENERIC_BRANDS = (b"mif1", b"msf1")
_AVIF_BRANDS = (b"avif", b"avis")

_SUPPORTED = "PNG, JPEG, GIF, WebP, AVIF, TIFF, HEIC or SVG"
_KINDS = "an asset id, a path to a file, bytes, a binary file object or a PIL image"


def is_asset_id(value: str) -> bool:
    """Whether value looks like an asset id: "asset_" then [A-Za-z0-9_-]+."""
    return (
        value.startswith("asset_")
        and 6 < len(value) <= _ID_MAX
        and all(c in _ID_CHARS for c in value[6:])
    )


def is_asset_path(value: str) -> bool:
    """Whether a str that starts like an asset id is really a file (asset_photo.jpg)."""
    return not is_asset_id(value) and os.path.isfile(value)


def extension_for(mime_type: str | None) -> str:
    return _EXTENSIONS.get(mime_type or "", "bin")


def sniff_mime(data: bytes) -> str | None:
    """The image type from the first bytes, or None when it is not one the API takes."""
    head = bytes(data[:64])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    if head[4:8] == b"ftyp":
        return _sniff_isobmff(data)
    if _looks_like_svg(data):
        return "image/svg+xml"
    return None


def _sniff_isobmff(data: bytes) -> str | None:
    # An ISO base media file (AVIF, HEIC): the ftyp box names a major brand
    # and a list of compatible brands.
    size = int.from_bytes(data[0:4], "big")
    if size < 16 or size > len(data):
        size = min(len(data), 256)
    major = bytes(data[8:12])
    brands = [major] + [bytes(data[i : i + 4]) for i in range(16, size - 3, 4)]
    if any(b in _AVIF_BRANDS for b in brands):
        return "image/avif"
    if any(b in _HEIF_BRANDS for b in brands):
        return "image/heic"
    if any(b in _HEIF_GENERIC_BRANDS for b in brands):
        return "image/heif"
    return None


def _looks_like_svg(data: bytes) -> bool:
    text = bytes(data[:4096]).decode("utf-8", "ignore").lstrip("\ufeff \t\r\n")
    if not text.startswith("<"):
        return False
    # After an optional XML declaration, comments and a doctype, the root
    # element must be <svg>.
    pos = text.find("<svg")
    if pos < 0 or len(text) <= pos + 4 or text[pos + 4] not in " \t\r\n>/":
        return False
    prologue = text[:pos]
    while prologue:
        prologue = prologue.lstrip()
        if not prologue:
            break
        if prologue.startswith("<?"):
            end = prologue.find("?>")
        elif prologue.startswith("<!--"):
            end = prologue.find("-->")
        elif prologue.startswith("<!"):
            end = prologue.find(">")
        else:
            return False
        if end < 0:
            return False
        prologue = prologue[end + 1 :].lstrip(">-?")
    return True


class Upload:
    """Bytes read from a user input, checked, ready to be sent to POST /assets."""

    __slots__ = ("data", "mime_type", "name")

    def __init__(self, data: bytes, name: str, mime_type: str) -> None:
        self.data = data
        self.name = name
        self.mime_type = mime_type

    def __repr__(self) -> str:
        return f"<Upload {self.name!r} {self.mime_type} {len(self.data)} bytes>"


def _too_large(what: str, size: int) -> _core.InvalidRequestError:
    return _core.InvalidRequestError(
        f"{what} is {size} bytes; this version uploads images up to {MAX_INLINE_UPLOAD} bytes "
        "(large uploads come with the multipart upload flow in a later release); "
        "resize or re-encode the image, or upload it elsewhere and pass its asset id"
    )


def _check_bytes(what: str, data: bytes, name: str) -> Upload:
    if not data:
        raise _core.InvalidRequestError(f"{what} is empty")
    if len(data) > MAX_INLINE_UPLOAD:
        raise _too_large(what, len(data))
    mime = sniff_mime(data)
    if mime is None:
        raise _core.InvalidRequestError(
            f"{what} is not an image type the API accepts ({_SUPPORTED})"
        )
    if "." not in name:
        name = f"{name}.{extension_for(mime)}"
    return Upload(data, name, mime)


def _from_path(what: str, value: str | os.PathLike) -> Upload:
    try:
        path = os.fsdecode(os.fspath(value))
    except TypeError as exc:
        raise _core.InvalidRequestError(f"{what}: {exc}") from None
    if not path:
        raise _core.InvalidRequestError(f"{what} is an empty string, not {_KINDS}")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise _core.InvalidRequestError(
            f"{what}: {path!r} is neither an existing file nor an asset id"
        ) from None
    except OSError as exc:
        raise _core.InvalidRequestError(f"{what}: cannot read {path!r}: {exc.strerror}") from None
    import stat as _stat

    if not _stat.S_ISREG(st.st_mode):
        raise _core.InvalidRequestError(f"{what}: {path!r} is not a regular file")
    if st.st_size > MAX_INLINE_UPLOAD:
        raise _too_large(f"{what} ({path!r})", st.st_size)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_INLINE_UPLOAD + 1)
    except OSError as exc:
        raise _core.InvalidRequestError(f"{what}: cannot read {path!r}: {exc.strerror}") from None
    return _check_bytes(f"{what} ({path!r})", data, os.path.basename(path))


def _from_file_object(what: str, f) -> Upload:
    try:
        data = f.read(MAX_INLINE_UPLOAD + 1)
    except Exception as exc:  # any error of a user object: report it as a bad input
        raise _core.InvalidRequestError(f"{what}: reading the file object failed: {exc}") from exc
    if isinstance(data, str):
        raise _core.InvalidRequestError(
            f"{what}: the file object is in text mode; open it with 'rb'"
        )
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise _core.InvalidRequestError(
            f"{what}: the file object's read() returned {type(data).__name__}, not bytes"
        )
    data = bytes(data)
    if len(data) > MAX_INLINE_UPLOAD:
        raise _too_large(what, len(data))
    name = getattr(f, "name", None)
    name = os.path.basename(name) if isinstance(name, str) and name else "upload"
    return _check_bytes(what, data, name)


def _is_pil_image(value: object) -> bool:
    # Only import Pillow when the object comes from it: it costs tens of
    # milliseconds and is optional.
    module = type(value).__module__ or ""
    if not (module == "PIL" or module.startswith("PIL.")) and not hasattr(value, "im"):
        return False
    try:
        from PIL import Image as PILImage
    except ImportError:
        return False
    return isinstance(value, PILImage.Image)


def _from_pil(what: str, image) -> Upload:
    import io

    buf = io.BytesIO()
    try:
        image.save(buf, format="PNG")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _core.InvalidRequestError(
            f"{what}: the PIL image cannot be saved as PNG: {exc}"
        ) from exc
    data = buf.getvalue()
    name, mime = "image.png", "image/png"
    if len(data) > MAX_INLINE_UPLOAD and image.mode in ("RGB", "L"):
        # A photo-like picture compresses badly as PNG; a high-quality JPEG of
        # it usually fits under the inline limit. Only done when PNG is too big.
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=95)
        data = buf.getvalue()
        name, mime = "image.jpg", "image/jpeg"
    if len(data) > MAX_INLINE_UPLOAD:
        raise _too_large(f"{what} (encoded as {mime})", len(data))
    return Upload(data, name, mime)


def resolve(value: object, what: str) -> str | Upload:
    """An asset id (str) or an Upload; InvalidRequestError for anything else.

    Reads files and encodes images, so every input is known good before any
    request is sent.
    """
    if isinstance(value, str):
        if is_asset_id(value):
            return value
        if value.startswith("asset_") and not is_asset_path(value):
            # Looks meant as an id: let the validator name what is wrong with it.
            return value
        return _from_path(what, value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = value.tobytes() if isinstance(value, memoryview) else bytes(value)
        return _check_bytes(what, data, "upload")
    if isinstance(value, os.PathLike):
        return _from_path(what, value)
    if _is_pil_image(value):
        return _from_pil(what, value)
    if callable(getattr(value, "read", None)):
        return _from_file_object(what, value)
    raise _core.InvalidRequestError(f"{what} must be {_KINDS}, not {type(value).__name__}")


def ref_list(image_refs) -> list:
    """image_refs as a list; a bare string (or bytes, a path, a file) is an error."""
    if image_refs is None:
        return []
    if isinstance(image_refs, (list, tuple)):
        return list(image_refs)
    if isinstance(image_refs, dict):
        raise _core.InvalidRequestError("image_refs must be a list or tuple of images, not a dict")
    if (
        isinstance(image_refs, (str, bytes, bytearray, memoryview, os.PathLike))
        or callable(getattr(image_refs, "read", None))
        or _is_pil_image(image_refs)
    ):
        raise _core.InvalidRequestError(
            "image_refs must be a list or tuple of images, not a single "
            f"{type(image_refs).__name__}; write image_refs=[x] for one reference"
        )
    try:
        return list(image_refs)  # any other iterable (a generator of paths, a set of ids)
    except TypeError:
        raise _core.InvalidRequestError(
            f"image_refs must be a list or tuple, not {type(image_refs).__name__}"
        ) from None
