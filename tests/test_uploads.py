"""Large uploads: inputs over 3.5 MB go through the multipart /v1/uploads flow.

Parts are PUT to presigned URLs on the emulator's CDN origin without
credentials, retried on transient failures; the upload is completed, polled
until imported, and its asset id used like any other.
"""

from __future__ import annotations

import io
import os
import tempfile
import time

import pytest
from conftest import png_bytes, submitted_bodies

import scenario_uni1 as uni1
from scenario_uni1._inputs import MAX_INLINE_UPLOAD, Upload, resolve
from scenario_uni1.emulator import images

BIG = 12_000_000  # two parts: 8 MiB and the rest
PART = 8 * 1024 * 1024
UPLOAD_ACTION = r"^/v1/uploads/[^/]+/action$"


def big_png(size: int = BIG, seed: int = 7) -> bytes:
    """A valid 120x80 PNG padded to `size` bytes (cheap to make, real to decode)."""
    return images.generated_image(120, 80, "png", seed, pad_to=size).tobytes()


@pytest.fixture
def big_path(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(big_png())
    return path


@pytest.fixture
def fast_client(emu):
    """Retries without long backoff pauses."""
    with emu.client(timeout=10.0, backoff_base=0.01, backoff_max=0.05) as c:
        yield c


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """tempfile writes into a directory of its own, to see what is left behind."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def part_puts(emu) -> list:
    return [r for r in emu.requests if r.method == "PUT" and r.origin == "cdn"]


def uploaded_data(emu, asset_id: str) -> bytes:
    with emu._lock:  # the emulator's own record of what was stored
        return emu._assets[asset_id].data


# -- the flow ------------------------------------------------------------------------------


def test_big_path_goes_multipart_and_its_id_is_used(client, emu, big_path):
    job = client.generate("edit it", source=big_path)
    assert job.id
    assert emu.request_count("POST", r"^/v1/uploads$", origin="api") == 1
    assert emu.request_count("POST", r"^/v1/assets$") == 0  # not inline
    created = next(r.json() for r in emu.requests if r.path == "/v1/uploads")
    assert created == {
        "fileName": "big.png",
        "contentType": "image/png",
        "kind": "image",
        "parts": 2,
        "fileSize": BIG,
    }
    puts = part_puts(emu)
    assert len(puts) == 2 == emu.request_count("PUT", origin="cdn")
    assert [len(r.body) for r in puts] == [PART, BIG - PART]
    # credentials never leave the API host
    assert not any("authorization" in r.headers for r in puts)
    assert emu.cdn_authorization_seen == 0
    assert emu.request_count("POST", UPLOAD_ACTION) == 1
    (upload,) = emu.uploads.values()
    assert upload["status"] == "imported"
    asset_id = upload["entityId"]
    assert submitted_bodies(emu)[-1]["source"] == asset_id
    assert uploaded_data(emu, asset_id) == big_path.read_bytes()
    # the order: create, parts, complete, polls, then the asset, then generate
    paths = [r.path for r in emu.requests]
    assert paths.index("/v1/assets/" + asset_id) > paths.index(puts[-1].path)
    assert paths[-1].startswith("/v1/generate/")


def test_client_upload_of_a_big_path(client, emu, big_path):
    asset_id = client.upload(str(big_path))
    assert asset_id.startswith("asset_")
    asset = client.get_asset(asset_id)
    assert asset["metadata"]["name"] == "big.png"
    assert (asset["metadata"]["width"], asset["metadata"]["height"]) == (120, 80)
    assert asset["metadata"]["size"] == BIG
    assert emu.request_count("PUT", origin="cdn") == 2


def test_a_big_path_is_not_read_into_memory(client, emu, big_path, monkeypatch):
    # resolve() reads only the head of a large file; the core reads the rest.
    reads = []
    real_open = open

    class Spy(io.FileIO):
        def read(self, n=-1):
            reads.append(n)
            return super().read(n)

    def spy_open(file, mode="r", *a, **k):
        if os.fspath(file) == os.fspath(big_path) and "b" in mode:
            return Spy(file, "r")
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr("builtins.open", spy_open)
    item = resolve(big_path, "source")
    assert isinstance(item, Upload) and item.data is None and item.large
    assert item.path == str(big_path) and item.size == BIG
    assert reads and all(0 < n <= 64 * 1024 for n in reads)


def test_bytes_over_the_limit_go_multipart_via_a_temporary_file(client, emu, private_tmp):
    data = big_png(MAX_INLINE_UPLOAD + 1_000_000, seed=3)
    asset_id = client.upload(data)
    assert emu.request_count("POST", r"^/v1/uploads$") == 1
    assert emu.request_count("PUT", origin="cdn") == 1  # 4.5 MB: one part
    assert emu.request_count("POST", r"^/v1/assets$") == 0
    assert uploaded_data(emu, asset_id) == data
    assert os.listdir(private_tmp) == []


def test_file_object_over_the_limit(client, emu, private_tmp):
    data = big_png(seed=4)
    f = io.BytesIO(data)
    f.name = "photo.png"
    job = client.generate("x", image_refs=[f])
    asset_id = submitted_bodies(emu)[-1]["imageRef"][0]
    assert job.id and uploaded_data(emu, asset_id) == data
    assert emu.request_count("PUT", origin="cdn") == 2
    assert emu.assets[asset_id]["metadata"]["name"] == "photo.png"
    assert os.listdir(private_tmp) == []


def test_big_pil_image(client, emu, private_tmp):
    PILImage = pytest.importorskip("PIL.Image")
    # RGBA noise: PNG cannot compress it and there is no JPEG fallback for RGBA.
    im = PILImage.frombytes("RGBA", (1200, 1000), os.urandom(1200 * 1000 * 4))
    asset_id = client.upload(im)
    assert emu.request_count("POST", r"^/v1/uploads$") == 1
    back = PILImage.open(io.BytesIO(uploaded_data(emu, asset_id)))
    assert back.size == (1200, 1000) and back.tobytes() == im.tobytes()
    assert os.listdir(private_tmp) == []


def test_small_inputs_still_go_inline(client, emu):
    client.upload(png_bytes())
    assert emu.request_count("POST", r"^/v1/assets$") == 1
    assert emu.request_count("POST", r"^/v1/uploads$") == 0


def test_same_big_input_uploaded_once(client, emu, big_path):
    client.estimate("x", source=big_path, image_refs=[str(big_path), big_path.read_bytes()])
    assert emu.request_count("POST", r"^/v1/uploads$") == 1
    assert emu.request_count("PUT", origin="cdn") == 2


# -- validation before any request ---------------------------------------------------------


def test_every_input_checked_before_a_big_upload(client, emu, big_path, tmp_path, private_tmp):
    not_image = tmp_path / "notes.png"
    not_image.write_bytes(b"hello")
    big_file = io.BytesIO(big_png(seed=5))
    with pytest.raises(uni1.InvalidRequestError, match="image_refs\\[1\\]"):
        client.generate("x", source=big_path, image_refs=[big_file, not_image])
    assert emu.request_count() == 0
    assert os.listdir(private_tmp) == []  # the file object's copy is gone


def test_big_non_image_refused_locally(client, emu, tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(os.urandom(MAX_INLINE_UPLOAD + 10))
    with pytest.raises(uni1.InvalidRequestError, match="not an image type"):
        client.upload(junk)
    assert emu.request_count() == 0


# -- faults ----------------------------------------------------------------------------------


def test_a_part_failing_once_is_retried(fast_client, emu, big_path):
    fault = emu.inject(method="PUT", origin="cdn", status=500, times=1)
    asset_id = fast_client.upload(big_path)
    assert fault.hits == 1
    puts = part_puts(emu)
    assert len(puts) == 3
    assert puts[0].fault == "respond" and puts[0].path == puts[1].path  # part 1 again
    assert uploaded_data(emu, asset_id) == big_path.read_bytes()


def test_a_dropped_part_connection_is_retried(fast_client, emu, big_path):
    emu.inject(method="PUT", path=r"/2$", origin="cdn", action="drop_before", times=1)
    asset_id = fast_client.upload(big_path)
    assert uploaded_data(emu, asset_id) == big_path.read_bytes()


def test_a_part_failing_always_sends_no_generate(fast_client, emu, big_path):
    emu.inject(method="PUT", origin="cdn", status=503, times=None)
    with pytest.raises(uni1.ServerError) as info:
        fast_client.generate("x", source=big_path)
    err = info.value
    assert err.status_code == 503 and err.retryable
    assert "big.png" in str(err) and "part 1 of 2" in str(err)
    assert "Signature" not in str(err)  # the presigned query string is not shown
    assert emu.request_count("PUT", origin="cdn") == fast_client.max_retries + 1
    assert emu.request_count("POST", UPLOAD_ACTION) == 0
    assert submitted_bodies(emu) == [] and emu.jobs_created == 0


def test_a_refused_part_is_not_retried(fast_client, emu, big_path):
    emu.inject(method="PUT", origin="cdn", status=403, times=None)
    with pytest.raises(uni1.PermissionDeniedError, match="part 1 of 2"):
        fast_client.upload(big_path)
    assert emu.request_count("PUT", origin="cdn") == 1


def test_upload_ending_failed_is_a_clear_error(client, emu, tmp_path):
    # A PNG signature passes the local check; the server finds no image behind it.
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(6_000_000))
    with pytest.raises(uni1.APIError, match="Unsupported or corrupt image") as info:
        client.generate("x", source=bad)
    err = info.value
    assert "broken.png" in str(err) and "failed" in str(err)
    assert err.status_code is None and err.retryable is False
    assert '"status":"failed"' in err.body
    assert emu.request_count("PUT", origin="cdn") == 1
    assert submitted_bodies(emu) == []


def test_complete_retried_only_while_pending(fast_client, emu, big_path):
    # 503 before the server acted: still pending, so "complete" is sent again.
    emu.inject(method="POST", path=UPLOAD_ACTION, status=503, times=1)
    fast_client.upload(big_path)
    assert emu.request_count("POST", UPLOAD_ACTION) == 2
    emu.clear_requests()
    # The server completed it and the answer was lost: the state says so, and
    # "complete" is not sent again (a second one would be refused).
    emu.inject(method="POST", path=UPLOAD_ACTION, action="drop_after", times=1)
    asset_id = fast_client.upload(big_path)
    assert emu.request_count("POST", UPLOAD_ACTION) == 1
    assert uploaded_data(emu, asset_id) == big_path.read_bytes()


def test_deadline_bounds_a_stalled_part(fast_client, emu, big_path):
    emu.inject(method="PUT", origin="cdn", delay=5, times=None)
    t0 = time.monotonic()
    with pytest.raises(uni1.TimeoutError):
        fast_client.upload(big_path, timeout=0.6)
    assert time.monotonic() - t0 < 2.0


def test_deadline_bounds_the_validation_wait(client, emu, big_path):
    emu.upload_duration = 60  # validation never ends within the test
    t0 = time.monotonic()
    with pytest.raises(uni1.TimeoutError, match="still validating at the deadline"):
        client.upload(big_path, timeout=2.0)
    assert time.monotonic() - t0 < 3.5
    assert emu.request_count("GET", r"^/v1/uploads/") >= 1  # it did poll


def test_missing_file_at_upload_time_is_an_os_error(client, emu, big_path):
    with pytest.raises(FileNotFoundError):
        upload = (None, str(big_path) + ".gone", "big.png", "image/png")
        client._start(None, uploads=[upload], mode="upload").result()
    assert emu.request_count() == 0
