"""Turning what users pass as images into something the API accepts.

An input is an asset id (kept as is), a path, bytes, a binary file object or a
PIL image (read and checked, then uploaded once). Everything here runs before
any request is sent, so a bad input never costs a request, let alone a job.

Up to MAX_INLINE_UPLOAD bytes an image goes inline (POST /assets, base64 in
JSON). A larger one goes through the multipart /uploads flow, read from a
file: a path is uploaded straight from it (only its first bytes are read
here, to check the type), a file object is copied to a temporary file, and
bytes or a PIL image are written to one when the upload starts. Temporary
files are deleted by Upload.close().
"""

import contextlib
import os

from . import _core

# The contract: small images go inline (base64 in JSON) up to 3.5 MB raw;
# larger files take the multipart /uploads flow.
MAX_INLINE_UPLOAD = 3_500_000

_HEAD_BYTES = 4096  # what sniff_mime looks at (SVG needs the most)
_COPY_CHUNK = 1 << 20

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
    """An image read from a user input, checked, ready to be uploaded.

    Either in memory (`data`), or in a file (`path`, `data` None) when it is
    over MAX_INLINE_UPLOAD bytes and came as a path or a file object. `size`
    is its length in bytes. A file this module created (a file object's copy)
    is owned: close() deletes it.
    """

    __slots__ = ("_owned", "_sha256", "data", "mime_type", "name", "path", "size")

    def __init__(
        self,
        data: bytes | None,
        name: str,
        mime_type: str,
        *,
        path: str | None = None,
        size: int | None = None,
        owned: bool = False,
    ) -> None:
        self.data = data
        self.name = name
        self.mime_type = mime_type
        self.path = path
        self.size = len(data) if data is not None else int(size or 0)
        self._owned = owned
        self._sha256: str | None = None

    @property
    def large(self) -> bool:
        """Whether it goes through the multipart /uploads flow."""
        return self.size > MAX_INLINE_UPLOAD

    @property
    def sha256(self) -> str:
        """SHA-256 (hex) of the content; a file is read in chunks, never whole."""
        if self._sha256 is None:
            import hashlib

            h = hashlib.sha256()
            if self.data is not None:
                h.update(self.data)
            elif self.path is not None:
                with open(self.path, "rb") as f:
                    while chunk := f.read(_COPY_CHUNK):
                        h.update(chunk)
            self._sha256 = h.hexdigest()
        return self._sha256

    def close(self) -> None:
        """Delete the temporary file this Upload owns (if any); idempotent."""
        if self._owned and self.path is not None:
            self._owned = False
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __del__(self) -> None:
        # A safety net: the client closes every Upload it made.
        if getattr(self, "_owned", False):
            with contextlib.suppress(OSError):
                self.close()

    def __repr__(self) -> str:
        where = f" at {self.path!r}" if self.path is not None else ""
        return f"<Upload {self.name!r} {self.mime_type} {self.size} bytes{where}>"


def close_all(items) -> None:
    """close() every Upload among items (asset ids and None are skipped)."""
    for item in items:
        if isinstance(item, Upload):
            item.close()


def _named(name: str, mime: str) -> str:
    return name if "." in name else f"{name}.{extension_for(mime)}"


def _sniff_or_raise(what: str, head: bytes) -> str:
    mime = sniff_mime(head)
    if mime is None:
        raise _core.InvalidRequestError(
            f"{what} is not an image type the API accepts ({_SUPPORTED})"
        )
    return mime


def _check_bytes(what: str, data: bytes, name: str) -> Upload:
    if not data:
        raise _core.InvalidRequestError(f"{what} is empty")
    mime = _sniff_or_raise(what, data)
    return Upload(data, _named(name, mime), mime)


def _from_path(what: str, value: str | os.PathLike) -> Upload:
    path = os.fsdecode(_core._fs_path(value, what))  # the binding's rule for paths (NUL, ...)
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
    large = st.st_size > MAX_INLINE_UPLOAD
    try:
        with open(path, "rb") as f:
            # A large file is uploaded from the file itself: only its head is
            # read here, to check that it is an image.
            data = f.read(_HEAD_BYTES if large else MAX_INLINE_UPLOAD + 1)
    except OSError as exc:
        raise _core.InvalidRequestError(f"{what}: cannot read {path!r}: {exc.strerror}") from None
    if not large:
        return _check_bytes(f"{what} ({path!r})", data, os.path.basename(path))
    if not data:
        raise _core.InvalidRequestError(f"{what} ({path!r}) is empty")
    mime = _sniff_or_raise(f"{what} ({path!r})", data)
    return Upload(None, _named(os.path.basename(path), mime), mime, path=path, size=st.st_size)


def _read_chunk(what: str, f, n: int) -> bytes:
    try:
        data = f.read(n)
    except Exception as exc:  # any error of a user object: report it as a bad input
        raise _core.InvalidRequestError(f"{what}: reading the file object failed: {exc}") from exc
    if isinstance(data, str):
        raise _core.InvalidRequestError(
            f"{what}: the file object is in text mode; open it with 'rb'"
        )
    if data is None:
        # A non-blocking raw stream with nothing ready: not something to wait for here.
        raise _core.InvalidRequestError(f"{what}: the file object's read() returned None")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise _core.InvalidRequestError(
            f"{what}: the file object's read() returned {type(data).__name__}, not bytes"
        )
    return bytes(data)


def _from_file_object(what: str, f) -> Upload:
    data = _read_chunk(what, f, MAX_INLINE_UPLOAD + 1)
    name = getattr(f, "name", None)
    name = os.path.basename(name) if isinstance(name, str) and name else "upload"
    if len(data) <= MAX_INLINE_UPLOAD:
        return _check_bytes(what, data, name)
    # Larger: checked from its head, then the rest streamed to a temporary
    # file, so at most MAX_INLINE_UPLOAD bytes are held in memory.
    mime = _sniff_or_raise(what, data)
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix="scenario_uni1-", suffix="." + extension_for(mime))
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while data:
                out.write(data)
                size += len(data)
                data = _read_chunk(what, f, _COPY_CHUNK)
    except BaseException:
        os.unlink(tmp)
        raise
    return Upload(None, _named(name, mime), mime, path=tmp, size=size, owned=True)


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
    # Still over the limit: the multipart flow takes it (written to a
    # temporary file when the upload starts).
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


def engine_inputs(src, refs, *, by_content: bool = False) -> tuple:
    """(source, image_refs, uploads) as Client._start takes them.

    src and refs are what Client._prepare returned (asset ids and Uploads).
    Each distinct Upload becomes one entry of uploads, a tuple (data, path,
    name, mime_type), and the inputs that use it its index there: identical
    inputs are uploaded once. Nothing is read or hashed here (this runs on
    the calling thread of submit): in-memory inputs are compared by content,
    file inputs (the large ones, uploaded from the file) by their real path.
    A blocking call may read: by_content=True compares every input by its
    SHA-256, so a file and the same bytes given in memory are uploaded once.
    """
    uploads: list = []
    seen: dict = {}

    def arg(item):
        if not isinstance(item, Upload):
            return item
        if by_content:
            key = ("sha256", item.mime_type, item.sha256)
        elif item.data is not None:
            key = ("data", item.mime_type, item.data)
        else:
            key = ("path", os.path.realpath(item.path or ""))
        index = seen.get(key)
        if index is None:
            index = seen[key] = len(uploads)
            uploads.append((item.data, item.path, item.name, item.mime_type))
        return index

    source = None if src is None else arg(src)
    return source, [arg(r) for r in refs], uploads
