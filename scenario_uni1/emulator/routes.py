"""The API origin: routing, authentication, generate, jobs and assets."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from . import http as _http
from . import images as _img
from .state import _Job, _schedule, _ticks
from .uploads import Uploads
from .wire import (
    _JSON_CT,
    GENERATE_PATH,
    MODEL_ID,
    TERMINAL,
    _iso,
    _json,
    _method_not_allowed,
    _project,
    _read_json,
)

PROMPT_MAX = 6000
MAX_REFS = 9
MAX_REFS_WITH_SOURCE = 8
CANCEL_REFUSED = "Cannot cancel this type of job. Action not permitted."


class Routes(Uploads):
    """The /v1 routes of the API origin."""

    # ------------------------------------------------------------------ API origin
    def _api(self, req):
        path = req.path
        if not path.startswith("/v1/"):
            return _json(404, {"message": "Not Found"})
        auth = req.headers.get("authorization")
        if auth not in self._auth_ok and not self._auth_slow(auth):
            return _json(401, {"reason": "Unauthorized"})
        parts = path.split("/")  # ["", "v1", resource, ...]
        n = len(parts)
        resource = parts[2]
        method = req.method
        if resource == "jobs":
            if n == 4 and parts[3]:
                if method in ("GET", "HEAD"):
                    return self._get_job(parts[3])
                return _method_not_allowed()
            if n == 3 or (n == 4 and not parts[3]):
                if method in ("GET", "HEAD"):
                    return self._list_jobs(req)
                return _method_not_allowed()
            if n == 5 and parts[4] == "action":
                if method == "POST":
                    return self._job_action(parts[3], req)
                return _method_not_allowed()
        elif resource == "generate":
            if path == GENERATE_PATH:
                if method == "POST":
                    return self._generate(req)
                return _method_not_allowed()
            return _json(404, {"message": "Model not found: {}".format("/".join(parts[3:]))})
        elif resource == "assets":
            if n == 3:
                if method == "POST":
                    return self._upload_small(req)
                return _method_not_allowed()
            if n == 4 and parts[3]:
                if method in ("GET", "HEAD"):
                    return self._get_asset(parts[3])
                return _method_not_allowed()
            if n == 5 and parts[4] == "download":
                if method == "POST":
                    return self._asset_download(parts[3], req)
                return _method_not_allowed()
        elif resource == "uploads":
            if n == 3:
                if method == "POST":
                    return self._create_upload(req)
                return _method_not_allowed()
            if n == 4 and parts[3]:
                if method in ("GET", "HEAD"):
                    return self._get_upload(parts[3])
                return _method_not_allowed()
            if n == 5 and parts[4] == "action":
                if method == "POST":
                    return self._upload_action(parts[3], req)
                return _method_not_allowed()
        return _json(404, {"message": "Not Found"})

    def _auth_slow(self, auth):
        """Accept a case-different scheme or base64 variant of the right credentials."""
        if not auth:
            return False
        scheme, _, value = auth.strip().partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer":
            return bool(self.bearer_token) and hmac.compare_digest(value, self.bearer_token)
        if scheme == "basic":
            try:
                decoded = base64.b64decode(value, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return False
            return hmac.compare_digest(decoded, f"{self.api_key}:{self.api_secret}")
        return False

    # ------------------------------------------------------------------ generate
    def _generate(self, req):
        body, err = _read_json(req)
        if err:
            return err
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or len(prompt) == 0:
            return _json(400, {"reason": "prompt is required and must be a non-empty string"})
        if len(prompt) > PROMPT_MAX:
            return _json(
                400,
                {"reason": f"prompt must be at most {PROMPT_MAX} characters (got {len(prompt)})"},
            )
        source = body.get("source")
        if source is not None and not isinstance(source, str):
            return _json(400, {"reason": "source must be an asset id"})
        raw_refs = body.get("imageRef")
        if raw_refs is None or isinstance(raw_refs, str):
            refs = []  # the live server drops a bare string without a word
        elif isinstance(raw_refs, list):
            if not all(isinstance(r, str) for r in raw_refs):
                return _json(400, {"reason": "imageRef must be an array of asset ids"})
            refs = list(raw_refs)
        else:
            return _json(400, {"reason": "imageRef must be an array of asset ids"})
        limit = MAX_REFS_WITH_SOURCE if source else MAX_REFS
        if len(refs) > limit:
            return _json(
                400,
                {
                    "reason": f"imageRef accepts at most {limit} images"
                    + (" when source is set" if source else "")
                },
            )
        aspect = body.get("aspectRatio")
        if aspect is not None and aspect not in _img.ASPECT_RATIOS:
            return _json(
                400,
                {"reason": "aspectRatio must be one of {}".format(", ".join(_img.ASPECT_RATIOS))},
            )
        fmt = body.get("outputFormat")
        if fmt is None:
            fmt = "png"
        elif fmt not in ("png", "jpeg"):
            return _json(400, {"reason": "outputFormat must be png or jpeg"})
        web = body.get("webSearch")
        if web is not None and not isinstance(web, bool):
            return _json(400, {"reason": "webSearch must be a boolean"})
        for asset_id in ([source] if source else []) + refs:
            if asset_id not in self._assets:
                return _json(404, {"reason": f"Asset not found: {asset_id}"})

        n_refs = len(refs) + (1 if source else 0)
        cost = self.base_cost + self.cost_per_reference * n_refs
        if (req.query.get("dryRun", "") if req.query_string else "").lower() in ("true", "1"):
            return _json(
                269,
                {
                    "creativeUnitsCost": cost,
                    "creativeUnitsDiscount": 0,
                    "costDetails": {
                        "modelId": MODEL_ID,
                        "baseCost": self.base_cost,
                        "referenceImages": n_refs,
                        "referenceCost": self.cost_per_reference * n_refs,
                        "webSearchCost": 0,
                        "total": cost,
                    },
                },
            )

        now = self.now()
        limit = self.max_jobs_in_flight
        if limit is not None:
            # The team's concurrency ceiling: refused before anything is created or billed.
            self._inflight = [j for j in self._inflight if self._state(j, now)[0] not in TERMINAL]
            if len(self._inflight) >= limit:
                return _json(
                    429,
                    {
                        "reason": "Too many jobs in progress",
                        "details": {"actionName": "generate", "actionLimit": limit},
                    },
                )

        if source and aspect is None:
            src = self._assets[source]
            w, h = _img.dimensions_for_size(src.width or 1, src.height or 1, self.image_long_side)
        else:
            w, h = _img.dimensions_for_ratio(aspect or "3:2", self.image_long_side)
        if self._outcomes:
            outcome, error, hint = self._outcomes.popleft()
        else:
            outcome, error, hint = "success", None, None
        duration = max(float(self.job_duration), 0.0)
        seed = self._next_job_seed()
        job = _Job(
            id=self._new_id("job_"),
            seq=len(self._job_list) + 1,
            created=now,
            duration=duration,
            seed=seed,
            input=body,
            cost=cost,
            outcome=outcome,
            error=error,
            hint=hint,
            width=w,
            height=h,
            fmt=fmt,
            outputs=max(int(self.outputs_per_job), 0),
            project_id=_project(req),
            schedule=_schedule(outcome, duration),
            ticks=_ticks(seed, duration),
        )
        self._jobs[job.id] = job
        self._job_list.append(job)
        self._jobs_created += 1
        # Kept without a ceiling too, so that one set on a running emulator counts the
        # jobs already in flight (pruned when the ceiling is checked).
        self._inflight.append(job)
        return _json(
            200,
            {
                "job": self._job_json(job, now, initial=True),
                "creativeUnitsCost": cost,
                "creativeUnitsDiscount": 0,
            },
        )

    def _get_job(self, job_id):
        job = self._jobs.get(job_id)
        if job is None:
            return _json(404, {"reason": f"Job not found: {job_id}"})
        # Polling is the hot path: the encoded answer is kept until the job changes.
        if job.final is not None:
            key = "final"
            state = None
        else:
            state = self._state(job, self.now())
            key = (state[2], state[1], state[3])
        cached = job.encoded
        if cached is None or cached[0] != key:
            data = json.dumps({"job": self._job_json(job, 0.0, state=state)}, separators=(",", ":"))
            cached = job.encoded = (key, data.encode())
        return _http.HttpResponse(200, cached[1], [_JSON_CT])

    def _page_token(self, seq):
        mac = hmac.new(self._url_secret, b"page:%d" % seq, hashlib.sha256).hexdigest()[:10]
        return base64.urlsafe_b64encode(b"%d:%s" % (seq, mac.encode())).decode().rstrip("=")

    def _page_start(self, token):
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            seq_text, _mac = raw.split(":")
            seq = int(seq_text)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None
        if not hmac.compare_digest(self._page_token(seq), token.rstrip("=")):
            return None
        return seq

    def _list_jobs(self, req):
        q = req.query if req.query_string else {}
        size_text = q.get("pageSize") or "50"
        try:
            page_size = int(size_text)
        except ValueError:
            page_size = 0
        if page_size < 1:
            return _json(400, {"reason": "pageSize must be a positive integer"})
        page_size = min(page_size, 100)
        start = len(self._job_list) - 1
        token = q.get("paginationToken")
        if token:
            seq = self._page_start(token)
            if seq is None:
                return _json(400, {"error": "Invalid paginationToken"})
            start = min(seq - 2, start)
        statuses = {s for s in (q.get("status") or "").split(",") if s}
        types = {s for s in (q.get("type") or "").split(",") if s}
        project = q.get("projectId")
        if types and "custom" not in types:
            return _json(200, {"jobs": []})
        now = self.now()
        page = []
        more = False
        for idx in range(start, -1, -1):
            job = self._job_list[idx]
            if project and job.project_id != project:
                continue
            if statuses and self._state(job, now)[0] not in statuses:
                continue
            if len(page) == page_size:
                more = True
                break
            page.append(job)
        result = {"jobs": [self._job_json(j, now) for j in page]}
        if more:
            result["nextPaginationToken"] = self._page_token(page[-1].seq)
        return _json(200, result)

    def _job_action(self, job_id, req):
        job = self._jobs.get(job_id)
        if job is None:
            return _json(404, {"reason": f"Job not found: {job_id}"})
        body, err = _read_json(req)
        if err:
            return err
        if body.get("action") != "cancel":
            return _json(400, {"reason": "Unknown action: {!r}".format(body.get("action"))})
        if not self.cancellable:
            return _json(400, {"reason": CANCEL_REFUSED})
        now = self.now()
        status, _p, i, _u = self._state(job, now)
        if status in TERMINAL:
            return _json(400, {"reason": f"Job is already {status}"})
        job.schedule = job.schedule[: i + 1] + [(now - job.created, "canceled")]
        job.error = "Canceled by the user."
        return _json(200, {"job": self._job_json(job, now)})

    def _asset_json(self, asset):
        size = asset.size
        path = f"/assets/{asset.id}/original.{asset.ext}"
        meta = {
            "type": "custom" if asset.source == "generated" else "uploaded",
            "kind": "image",
            "name": asset.name,
            "width": asset.width,
            "height": asset.height,
            "size": size,
        }
        if asset.job_id:
            meta["parentJobId"] = asset.job_id
            meta["modelId"] = MODEL_ID
        created = _iso(asset.created)
        return {
            "id": asset.id,
            "url": self._sign(path),
            "mimeType": asset.mime,
            "kind": "image",
            "status": "success",
            "metadata": meta,
            "properties": {"size": size, "width": asset.width, "height": asset.height},
            "source": asset.source,
            "ownerId": asset.project_id or "proj_emulator",
            "authorId": "user_emulator",
            "collectionIds": [],
            "tags": [],
            "privacy": "private",
            "createdAt": created,
            "updatedAt": created,
        }

    def _get_asset(self, asset_id):
        asset = self._assets.get(asset_id)
        if asset is None:
            return _json(404, {"reason": f"Asset not found: {asset_id}"})
        return _json(200, {"asset": self._asset_json(asset)})

    def _upload_small(self, req):
        body, err = _read_json(req)
        if err:
            return err
        image = body.get("image")
        if not isinstance(image, str) or not image:
            return _json(400, {"reason": "image is required (a data URL or base64 string)"})
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            return _json(400, {"reason": "name must be a string"})
        payload = image
        if image.startswith("data:"):
            header, comma, payload = image.partition(",")
            if not comma or not header.endswith(";base64"):
                return _json(400, {"reason": "image data URL must be base64 encoded"})
        data = _b64decode(payload)
        if not data:
            return _json(400, {"reason": "image is not valid base64"})
        info = _img.sniff_image(data)
        if info is None:
            return _json(400, {"reason": "Unsupported or corrupt image"})
        asset = self._new_asset(info, data, name, "uploaded", _project(req))
        return _json(200, {"asset": self._asset_json(asset)})

    def _asset_download(self, asset_id, req):
        asset = self._assets.get(asset_id)
        if asset is None:
            return _json(404, {"reason": f"Asset not found: {asset_id}"})
        body, err = _read_json(req)
        if err:
            return err
        fmt = body.get("targetFormat")
        if not isinstance(fmt, str):
            return _json(400, {"reason": "targetFormat is required"})
        fmt = fmt.lower()
        fmt = {"jpg": "jpeg", "tif": "tiff"}.get(fmt, fmt)
        if fmt not in ("png", "jpeg", "webp", "gif", "bmp", "tiff", "avif"):
            return _json(400, {"reason": f"Unsupported targetFormat: {fmt}"})
        path = f"/assets/{asset.id}/converted.{_img.EXT_BY_FORMAT.get(fmt, fmt)}"
        return _json(200, {"url": self._sign(path)})


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass
    cleaned = "".join(text.split())
    try:
        if "-" in cleaned or "_" in cleaned:
            return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        return None
