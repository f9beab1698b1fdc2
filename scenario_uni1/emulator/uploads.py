"""Multipart uploads: create, the parts' presigned URLs (cdn.py takes the PUTs),
complete, and the validating -> validated -> imported (or failed) status."""

from __future__ import annotations

from . import images as _img
from .cdn import Cdn
from .state import _Upload
from .wire import _iso, _json, _project, _read_json

MIN_PART_BYTES = 5 * 1024 * 1024


class Uploads(Cdn):
    """The /v1/uploads routes."""

    # ------------------------------------------------------------------ uploads
    def _create_upload(self, req):
        body, err = _read_json(req)
        if err:
            return err
        file_name = body.get("fileName")
        if not isinstance(file_name, str) or not file_name:
            return _json(400, {"reason": "fileName is required"})
        parts = body.get("parts", 1)
        if not isinstance(parts, int) or isinstance(parts, bool) or not 1 <= parts <= 10000:
            return _json(400, {"reason": "parts must be an integer between 1 and 10000"})
        file_size = body.get("fileSize")
        if file_size is not None and (
            not isinstance(file_size, int) or isinstance(file_size, bool) or file_size < 0
        ):
            return _json(400, {"reason": "fileSize must be a non-negative integer"})
        kind = body.get("kind", "image")
        if kind != "image":
            return _json(400, {"reason": "kind must be image"})
        now = self.now()
        upload = _Upload(
            id=self._new_id("upload_"),
            file_name=file_name,
            content_type=body.get("contentType"),
            kind=kind,
            parts=parts,
            file_size=file_size,
            created=now,
            project_id=_project(req),
            duration=max(float(self.upload_duration), 0.0),
        )
        upload.part_urls = [self._presign_part(upload.id, k, now) for k in range(1, parts + 1)]
        self._uploads[upload.id] = upload
        return _json(200, {"upload": self._upload_json(upload, now)})

    def _upload_state(self, upload, now):
        if upload.completed is None:
            return "pending"
        t = now - upload.completed
        d = upload.duration
        ok = upload.error is None
        if not ok:
            return "validating" if t < d / 2 else "failed"
        if t < d / 3:
            return "validating"
        if t < 2 * d / 3:
            return "validated"
        if upload.asset_id is None:
            fmt_info, data = upload.result
            asset = self._new_asset(fmt_info, data, upload.file_name, "uploaded", upload.project_id)
            asset.created = upload.completed + d
            upload.asset_id = asset.id
            upload.result = None
        return "imported"

    def _upload_json(self, upload, now):
        status = self._upload_state(upload, now)
        data = {
            "id": upload.id,
            "status": status,
            "fileName": upload.file_name,
            "contentType": upload.content_type,
            "kind": upload.kind,
            "fileSize": upload.file_size,
            "parts": upload.part_urls if upload.completed is None else [],
            "createdAt": _iso(upload.created),
            "updatedAt": _iso(upload.completed or upload.created),
            "ownerId": upload.project_id or "proj_emulator",
            "authorId": "user_emulator",
        }
        if status == "imported":
            data["entityId"] = upload.asset_id
        if status == "failed":
            data["errorMessage"] = upload.error
        return data

    def _get_upload(self, upload_id):
        upload = self._uploads.get(upload_id)
        if upload is None:
            return _json(404, {"reason": f"Upload not found: {upload_id}"})
        return _json(200, {"upload": self._upload_json(upload, self.now())})

    def _upload_action(self, upload_id, req):
        upload = self._uploads.get(upload_id)
        if upload is None:
            return _json(404, {"reason": f"Upload not found: {upload_id}"})
        body, err = _read_json(req)
        if err:
            return err
        action = body.get("action")
        if action != "complete":
            return _json(400, {"reason": f"Unknown action: {action!r}"})
        if upload.completed is not None:
            return _json(400, {"reason": "Upload already completed"})
        missing = [k for k in range(1, upload.parts + 1) if k not in upload.part_data]
        if missing:
            return _json(400, {"reason": f"Upload has missing parts: {missing}"})
        sizes = [len(upload.part_data[k]) for k in range(1, upload.parts + 1)]
        data = b"".join(upload.part_data[k] for k in range(1, upload.parts + 1))
        upload.part_data = {}
        small = [k + 1 for k, s in enumerate(sizes[:-1]) if s < MIN_PART_BYTES]
        info = _img.sniff_image(data)
        if small:
            upload.error = f"EntityTooSmall: part {small[0]} is smaller than the 5 MiB minimum"
        elif upload.file_size is not None and upload.file_size != len(data):
            upload.error = (
                f"File size mismatch: expected {upload.file_size} bytes, received {len(data)}"
            )
        elif info is None:
            upload.error = "Unsupported or corrupt image"
        else:
            upload.result = (info, data)
        upload.completed = self.now()
        return _json(200, {"upload": self._upload_json(upload, upload.completed)})
