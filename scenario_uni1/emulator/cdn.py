"""The CDN origins: CloudFront-style signed URLs, downloads with ranges and
conversions, presigned part PUTs of multipart uploads, and the "redirect" fault."""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import hmac
import json
import re

from . import http as _http
from . import images as _img
from .state import State
from .wire import _iso

_XML_CT = ("Content-Type", "text/xml")


def _cf_b64(data: bytes) -> str:
    """CloudFront's URL-safe base64: + becomes -, = becomes _, / becomes ~."""
    return base64.b64encode(data).decode().translate(str.maketrans("+=/", "-_~"))


def _cf_unb64(text: str) -> bytes:
    return base64.b64decode(text.translate(str.maketrans("-_~", "+=/")), validate=True)


def _cdn_error(status: int, code: str, message: str) -> _http.HttpResponse:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()
    return _http.HttpResponse(status, body, [_XML_CT, ("Server", "CloudFront")])


def _parse_range(header, total):
    """(start, end_exclusive) for a single byte range, None to ignore, or 'unsatisfiable'."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if not first:
        n = int(last)
        if n == 0:
            return "unsatisfiable"
        return max(total - n, 0), total
    start = int(first)
    end = min(int(last) + 1, total) if last else total
    if start >= total or end <= start:
        return "unsatisfiable"
    return start, end


class Cdn(State):
    """Signing and serving of the CDN origins (cdn_url, cdn2_url)."""

    # ------------------------------------------------------------------ assets
    def _sign(self, path, ttl=None):
        exp = int(self.now() + (self.url_ttl if ttl is None else ttl))
        gen = self._key_generation
        sig = hmac.new(self._url_secret, b"%d\n%s\n%d" % (gen, path.encode(), exp), "sha256")
        policy = {
            "Statement": [
                {
                    "Resource": self.cdn_url + path,
                    "Condition": {"DateLessThan": {"AWS:EpochTime": exp}},
                }
            ]
        }
        encoded_policy = _cf_b64(json.dumps(policy, separators=(",", ":")).encode())
        return (
            f"{self.cdn_url}{path}?Policy={encoded_policy}"
            f"&Signature={_cf_b64(sig.digest())}&Key-Pair-Id=K2EMU{gen}"
        )

    def _check_signature(self, req):
        """None if the CloudFront-style signature is valid now, else a 403 response."""
        q = req.query
        policy, signature, key = q.get("Policy"), q.get("Signature"), q.get("Key-Pair-Id")
        if not (policy and signature and key):
            return _cdn_error(
                403, "MissingKey", "Missing Key-Pair-Id query parameter or cookie value"
            )
        denied = _cdn_error(403, "AccessDenied", "Access denied")
        try:
            doc = json.loads(_cf_unb64(policy))
            exp = int(doc["Statement"][0]["Condition"]["DateLessThan"]["AWS:EpochTime"])
            sig = _cf_unb64(signature)
            gen = int(key.rpartition("EMU")[2])
        except (ValueError, KeyError, IndexError, TypeError, binascii.Error):
            return denied
        expected = hmac.new(
            self._url_secret, b"%d\n%s\n%d" % (gen, req.path.encode(), exp), "sha256"
        ).digest()
        if not hmac.compare_digest(sig, expected):
            return denied
        if gen != self._key_generation or self.now() >= exp:
            return denied
        return None

    def _converted(self, asset, fmt):
        body = asset.conversions.get(fmt)
        if body is None:
            if fmt == asset.fmt:
                body = asset.body()
            elif asset.data is None and fmt in ("png", "jpeg"):
                body = _img.generated_image(asset.width, asset.height, fmt, asset.seed)
            else:
                data = _img.convert_image(asset.body().tobytes(), fmt)
                # Without Pillow (or a codec) the original bytes go out as the new type.
                body = _img.Body([data if data is not None else asset.body().tobytes()])
            asset.conversions[fmt] = body
        return body

    def _presign_part(self, upload_id, number, now):
        exp = int(now + 3600)
        path = f"/uploads/{upload_id}/{number}"
        sig = hmac.new(
            self._url_secret, b"put\n%s\n%d" % (path.encode(), exp), hashlib.sha256
        ).hexdigest()
        url = (
            f"{self.cdn_url}{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Expires={exp}&X-Amz-Signature={sig}"
        )
        return {"number": number, "url": url, "expires": _iso(exp)}

    # ------------------------------------------------------------------ CDN origin
    def _cdn(self, req):
        method = req.method
        path = req.path
        if path.startswith("/uploads/"):
            if method != "PUT":
                return _cdn_error(403, "AccessDenied", "Access Denied")
            return self._put_part(req)
        if method not in ("GET", "HEAD"):
            return _cdn_error(403, "AccessDenied", "Access Denied")
        denied = self._check_signature(req)
        if denied is not None:
            return denied
        parts = path.split("/")  # ["", "assets", id, file]
        asset = self._assets.get(parts[2]) if len(parts) == 4 and parts[1] == "assets" else None
        if asset is None:
            return _cdn_error(404, "NoSuchKey", "The specified key does not exist.")
        stem, _, ext = parts[3].partition(".")
        fmt = {"jpg": "jpeg", "tif": "tiff"}.get(ext, ext)
        if stem == "original":
            body, fmt = asset.body(), asset.fmt
        elif stem == "converted":
            body = self._converted(asset, fmt)
        else:
            return _cdn_error(404, "NoSuchKey", "The specified key does not exist.")
        total = len(body)
        headers = [
            ("Content-Type", _img.MIME_BY_FORMAT.get(fmt, "application/octet-stream")),
            ("Accept-Ranges", "bytes"),
            ("ETag", f'"{asset.id}-{fmt}-{total}"'),
            ("Last-Modified", email.utils.formatdate(asset.created, usegmt=True)),
            ("Cache-Control", "private, max-age=86400"),
            ("X-Cache", "Miss from cloudfront"),
        ]
        rng = req.headers.get("range")
        if rng:
            span = _parse_range(rng, total)
            if span == "unsatisfiable":
                resp = _cdn_error(416, "InvalidRange", "The requested range is not satisfiable")
                resp.headers.append(("Content-Range", f"bytes */{total}"))
                return resp
            if span is not None:
                start, end = span
                headers.append(("Content-Range", f"bytes {start}-{end - 1}/{total}"))
                return _http.HttpResponse(206, body.slice(start, end), headers)
        return _http.HttpResponse(200, body, headers)

    def _put_part(self, req):
        parts = req.path.split("/")  # ["", "uploads", id, number]
        q = req.query if req.query_string else {}
        try:
            exp = int(q.get("X-Amz-Expires", ""))
            number = int(parts[3])
        except (ValueError, IndexError):
            return _cdn_error(403, "AccessDenied", "Access Denied")
        expected = hmac.new(
            self._url_secret, b"put\n%s\n%d" % (req.path.encode(), exp), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(q.get("X-Amz-Signature", ""), expected):
            return _cdn_error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        if self.now() >= exp:
            return _cdn_error(403, "AccessDenied", "Request has expired")
        upload = self._uploads.get(parts[2])
        if upload is None or upload.completed is not None or not 1 <= number <= upload.parts:
            return _cdn_error(404, "NoSuchUpload", "The specified upload does not exist.")
        upload.part_data[number] = req.body
        etag = f'"{hashlib.md5(req.body, usedforsecurity=False).hexdigest()}"'
        return _http.HttpResponse(200, b"", [("ETag", etag)])

    def _redirect_response(self, req):
        target = req.path + ("?" + req.query_string if req.query_string else "")
        return _http.HttpResponse(302, b"", [("Location", self.cdn2_url + target)])
