"""End to end against the emulator: generate, wait, download, edit, references, errors."""

from __future__ import annotations

import io
import os
import urllib.request

import pytest
from conftest import (
    FAST_JOB,
    GENERATE_PATH,
    assert_no_temp_files,
    jpeg_bytes,
    png_bytes,
    ratio_of,
    submitted_bodies,
)
from PIL import Image as PILImage

import scenario_uni1 as uni1
from scenario_uni1.emulator import Emulator

RATIOS = ("1:3", "9:16", "2:3", "3:4", "1:1", "4:3", "3:2", "16:9", "3:1")
FORMATS = {"png": ("PNG", "image/png", ".png"), "jpeg": ("JPEG", "image/jpeg", ".jpg")}


def assert_ratio(width: int, height: int, ratio: str) -> None:
    expected = ratio_of(ratio)
    got = width / height
    assert abs(got - expected) / expected < 0.02, f"{width}x{height} is not {ratio}"


# -- every ratio and format ------------------------------------------------------------
# All 18 jobs are submitted at once to one emulator, so their server time
# overlaps; each parametrized test then waits for and checks its own job.


@pytest.fixture(scope="module")
def ratio_jobs():
    with Emulator(job_duration=FAST_JOB) as emulator, emulator.client(timeout=10.0) as c:
        jobs = {
            (ratio, fmt): c.generate(
                f"a lighthouse, {ratio}", aspect_ratio=ratio, output_format=fmt
            )
            for ratio in RATIOS
            for fmt in FORMATS
        }
        yield emulator, jobs


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("ratio", RATIOS)
def test_generate_wait_download_every_ratio_and_format(ratio_jobs, tmp_path, ratio, fmt):
    emulator, jobs = ratio_jobs
    job = jobs[(ratio, fmt)]
    assert job.id.startswith("job_")
    assert job.wait(timeout=20) is job
    assert job.status == "success" and job.done
    assert len(job.asset_ids) >= 1
    paths = job.download(tmp_path)
    assert len(paths) == len(job.asset_ids)
    pil_format, _mime, ext = FORMATS[fmt]
    for path, asset_id in zip(paths, job.asset_ids):
        assert path.parent == tmp_path
        assert path.suffix == ext
        assert asset_id in path.name
        assert path.stat().st_size > 0
        with PILImage.open(path) as im:
            assert im.format == pil_format
            assert_ratio(im.width, im.height, ratio)
    assert_no_temp_files(tmp_path)
    # The submitted body carried exactly the requested options.
    body = next(
        b
        for b in submitted_bodies(emulator)
        if b.get("prompt") == f"a lighthouse, {ratio}" and b.get("outputFormat", "png") == fmt
    )
    assert body["aspectRatio"] == ratio


def test_download_refuses_to_overwrite(client, tmp_path):
    job = client.generate("a boat")
    first = job.download(tmp_path)
    before = first[0].read_bytes()
    with pytest.raises((FileExistsError, uni1.Uni1Error, OSError)):
        job.download(tmp_path)
    assert first[0].read_bytes() == before
    again = job.download(tmp_path, overwrite=True)
    assert again == first


def test_run_returns_images_with_correct_data(client, emu, tmp_path):
    images = client.run("a red fox", aspect_ratio="16:9", timeout=20)
    assert isinstance(images, list) and len(images) >= 1
    assert emu.jobs_created == 1
    job = client.job(list(emu.jobs)[-1])
    assert job.status == "success"
    assert [im.asset_id for im in images] == list(job.asset_ids)
    paths = job.download(tmp_path)
    for image, path in zip(images, paths):
        assert isinstance(image, uni1.Image)
        assert image.mime_type == "image/png"
        assert image.data == path.read_bytes()
        pil = image.to_pil()
        assert pil.size == (image.width, image.height)
        assert_ratio(image.width, image.height, "16:9")


def test_run_jpeg(client):
    images = client.run("a red fox", output_format="jpeg", aspect_ratio="1:1", timeout=20)
    assert images and all(im.mime_type == "image/jpeg" for im in images)
    for im in images:
        assert im._repr_jpeg_() == im.data and im._repr_png_() is None
        assert im.to_pil().format == "JPEG"
        assert im.width == im.height


def test_run_timeout_is_one_deadline(client, emu):
    emu.job_duration = 30.0
    with pytest.raises(uni1.TimeoutError):
        client.run("slow", timeout=0.5)
    assert isinstance(uni1.TimeoutError("x"), TimeoutError)


def test_module_level_functions_use_default_client(emu_env, tmp_path):
    emu = emu_env
    job = uni1.generate("a mountain", aspect_ratio="3:1")
    assert job.client is uni1.default_client()
    assert job.wait(timeout=20).status == "success"
    again = uni1.job(job.id)
    assert again.id == job.id and again.status == "success"
    images = uni1.run("a mountain", aspect_ratio="1:3", timeout=20)
    assert_ratio(images[0].width, images[0].height, "1:3")
    cost = uni1.estimate("a mountain")
    assert isinstance(cost, float) and cost > 0
    asset_id = uni1.upload(png_bytes())
    assert asset_id.startswith("asset_")
    assert emu.jobs_created == 2


# -- edit mode and references ------------------------------------------------------------


def test_edit_keeps_source_aspect_ratio(client, emu):
    source = png_bytes(300, 100)  # 3:1
    job = client.generate("make it night", source=source)
    images = job.images(timeout=20)
    assert_ratio(images[0].width, images[0].height, "3:1")
    body = submitted_bodies(emu)[-1]
    assert body["source"].startswith("asset_")
    assert "aspectRatio" not in body


def test_edit_with_explicit_ratio(client):
    job = client.generate("make it night", source=png_bytes(300, 100), aspect_ratio="1:1")
    images = job.images(timeout=20)
    assert images[0].width == images[0].height


def _fetch_asset_bytes(client, asset_id: str) -> bytes:
    asset = client.get_asset(asset_id)
    with urllib.request.urlopen(asset["url"], timeout=10) as resp:
        return resp.read()


def test_references_of_every_kind_uploaded_once(client, emu, tmp_path):
    path_data = png_bytes(40, 40, (1, 2, 3))
    path = tmp_path / "ref.png"
    path.write_bytes(path_data)
    raw = jpeg_bytes(50, 50, (9, 9, 9))
    file_data = png_bytes(30, 60, (5, 100, 5))
    pil = PILImage.new("RGB", (20, 20), (0, 0, 250))

    job = client.generate(
        "combine these",
        image_refs=[path, raw, io.BytesIO(file_data), pil, str(path), raw],
    )
    assert emu.request_count(method="POST", path="/v1/assets") == 4
    body = submitted_bodies(emu)[-1]
    refs = body["imageRef"]
    assert isinstance(refs, list) and len(refs) == 6
    assert all(r.startswith("asset_") for r in refs)
    assert len(set(refs[:4])) == 4
    assert refs[4] == refs[0] and refs[5] == refs[1]
    # Each id holds what was given, in order.
    assert _fetch_asset_bytes(client, refs[0]) == path_data
    assert _fetch_asset_bytes(client, refs[1]) == raw
    assert _fetch_asset_bytes(client, refs[2]) == file_data
    uploaded_pil = PILImage.open(io.BytesIO(_fetch_asset_bytes(client, refs[3])))
    assert uploaded_pil.format == "PNG" and uploaded_pil.getpixel((0, 0))[:3] == (0, 0, 250)
    assert job.wait(timeout=20).status == "success"


def test_asset_ids_are_passed_through_without_upload(client, emu):
    asset_id = client.upload(png_bytes())
    assert emu.request_count(method="POST", path="/v1/assets") == 1
    client.generate("again", source=asset_id, image_refs=(asset_id,))
    assert emu.request_count(method="POST", path="/v1/assets") == 1
    body = submitted_bodies(emu)[-1]
    assert body["source"] == asset_id and body["imageRef"] == [asset_id]


def test_single_reference_is_sent_as_array(client, emu):
    asset_id = client.upload(png_bytes())
    client.generate("one ref", image_refs=[asset_id])
    assert submitted_bodies(emu)[-1]["imageRef"] == [asset_id]


# -- validation before any request ----------------------------------------------------------


def _bad_cases(tmp_path):
    unknown = tmp_path / "notes.txt"
    unknown.write_bytes(b"just some text, not an image")
    ids = [f"asset_ref{i}" for i in range(10)]
    return {
        "empty prompt": {"prompt": ""},
        "6001-char prompt": {"prompt": "x" * 6001},
        "bad ratio": {"aspect_ratio": "5:4"},
        "bad format": {"output_format": "webp"},
        "10 refs": {"image_refs": ids},
        "9 refs with source": {"source": "asset_src", "image_refs": ids[:9]},
        "bare string image_refs": {"image_refs": "asset_abc"},
        "bare path image_refs": {"image_refs": str(unknown)},
        "nonexistent path": {"image_refs": [str(tmp_path / "missing.png")]},
        "nonexistent source": {"source": tmp_path / "missing.png"},
        "unknown file type": {"image_refs": [unknown]},
        "unknown bytes": {"source": b"GIF? no, plain bytes"},
        "wrong type": {"image_refs": [42]},
        "wrong source type": {"source": 3.5},
        "bad asset id": {"source": "asset_has spaces!"},
        "directory": {"image_refs": [tmp_path]},
        "text file object": {"image_refs": [io.StringIO("text")]},
        "prompt not str": {"prompt": 123},
        "ratio not str": {"aspect_ratio": 16 / 9},
    }


BAD_CASE_NAMES = [
    "empty prompt",
    "6001-char prompt",
    "bad ratio",
    "bad format",
    "10 refs",
    "9 refs with source",
    "bare string image_refs",
    "bare path image_refs",
    "nonexistent path",
    "nonexistent source",
    "unknown file type",
    "unknown bytes",
    "wrong type",
    "wrong source type",
    "bad asset id",
    "directory",
    "text file object",
    "prompt not str",
    "ratio not str",
]


@pytest.mark.parametrize("case", BAD_CASE_NAMES)
@pytest.mark.parametrize("method", ["generate", "estimate", "run"])
def test_invalid_request_sends_nothing(client, emu, tmp_path, case, method):
    kwargs = _bad_cases(tmp_path)[case]
    prompt = kwargs.pop("prompt", "a valid prompt")
    with pytest.raises(uni1.InvalidRequestError) as info:
        getattr(client, method)(prompt, **kwargs)
    assert isinstance(info.value, ValueError)
    assert str(info.value)
    assert emu.request_count() == 0, [(r.method, r.path) for r in emu.requests]
    assert client.request_count == 0
    assert emu.jobs_created == 0


def test_prompt_of_6000_chars_is_accepted(client, emu):
    job = client.generate("é" * 6000)
    assert submitted_bodies(emu)[-1]["prompt"] == "é" * 6000
    assert job.id


def test_oversized_input_goes_through_multipart(client, emu):
    big = png_bytes() + b"\0" * 3_600_000
    job = client.generate("x", source=big)
    assert emu.request_count("POST", r"^/v1/uploads$") == 1
    assert emu.request_count("POST", r"^/v1/assets$") == 0
    assert job.raw["metadata"]["input"]["source"].startswith("asset_")


def test_nine_refs_allowed_eight_with_source(client, emu):
    asset_id = client.upload(png_bytes())
    client.estimate("nine", image_refs=[asset_id] * 9)
    client.estimate("eight", source=asset_id, image_refs=[asset_id] * 8)
    assert emu.jobs_created == 0


# -- API errors --------------------------------------------------------------------------


def test_wrong_secret_is_authentication_error(emu):
    with (
        uni1.Client(emu.api_key, "not-the-secret", base_url=emu.url) as c,
        pytest.raises(uni1.AuthenticationError) as info,
    ):
        c.generate("a cat")
    err = info.value
    assert isinstance(err, uni1.APIError)
    assert err.status_code == 401
    assert err.retryable is False
    assert emu.jobs_created == 0


def test_unknown_job_is_not_found(client):
    with pytest.raises(uni1.NotFoundError) as info:
        client.job("job_doesnotexist0000000000000")
    assert info.value.status_code == 404


def test_unknown_asset_reference_is_not_found(client, emu):
    with pytest.raises(uni1.NotFoundError):
        client.generate("x", image_refs=["asset_doesnotexist123"])
    assert emu.jobs_created == 0


def test_job_failure_carries_error_and_hint(client, emu):
    emu.next_job_outcome(status="failure", error="The model refused", hint="Rephrase the prompt")
    job = client.generate("a forbidden thing")
    with pytest.raises(uni1.JobFailedError) as info:
        job.wait(timeout=20)
    err = info.value
    assert isinstance(err, uni1.JobError)
    assert err.error == "The model refused"
    assert err.hint == "Rephrase the prompt"
    assert err.job.id == job.id
    assert job.status == "failure" and job.done
    assert job.error == "The model refused" and job.hint == "Rephrase the prompt"
    with pytest.raises(uni1.JobFailedError):
        job.images()


def test_estimate_creates_no_job(client, emu):
    before = emu.jobs_created
    cost = client.estimate("a cat", aspect_ratio="1:1")
    assert isinstance(cost, float) and cost > 0
    assert emu.jobs_created == before
    dry = [r for r in emu.requests if r.path == GENERATE_PATH]
    assert len(dry) == 1
    assert dry[0].query.get("dryRun") == "true"
    assert "dryRun" not in dry[0].json()


def test_estimate_counts_references(client):
    asset_id = client.upload(png_bytes())
    plain = client.estimate("a cat")
    with_refs = client.estimate("a cat", image_refs=[asset_id, asset_id])
    assert with_refs > plain


def test_cancel_is_refused_like_the_live_api(client):
    job = client.generate("a cat")
    with pytest.raises(uni1.APIError) as info:
        job.cancel()
    assert info.value.status_code == 400
    assert "cancel" in (info.value.reason or str(info.value)).lower()


def test_submit_cost_is_reported(client):
    job = client.generate("a cat")
    assert job.cost is not None and job.cost > 0


def test_wait_progress_callable(client):
    seen = []
    job = client.generate("a cat")
    job.wait(timeout=20, progress=lambda j: seen.append((j.status, j.progress)))
    assert seen and seen[-1][0] == "success"
    assert all(0.0 <= p <= 1.0 for _, p in seen)


def test_wait_progress_true_prints_to_stderr(client, capfd):
    job = client.generate("a cat")
    job.wait(timeout=20, progress=True)
    err = capfd.readouterr().err
    assert job.id in err and "success" in err


def test_images_and_download_of_fresh_job_wait_first(client, tmp_path):
    job = client.generate("a cat")
    paths = job.download(os.fspath(tmp_path))
    assert job.status == "success"
    assert all(p.exists() for p in paths)
