"""Downloads of several assets: parallel transfers, file modes, no leftovers."""

import os
import stat

import pytest
from PIL import Image as PILImage

import scenario_uni1 as uni1


def test_several_assets_download_in_parallel(uni1_emulator, tmp_path):
    emu = uni1_emulator
    emu.outputs_per_job = 5
    job = emu.client().generate("five of them")
    job.wait(timeout=30)
    # every transfer waits 0.3 s on the CDN: one after another that is 1.5 s
    emu.inject(origin="cdn", delay=0.3, times=None, headers={"X-Slow": "1"})
    cdn_before = emu.request_count(origin="cdn")
    paths = job.download(tmp_path)
    assert [p.name for p in paths] == [f"{a}.png" for a in job.asset_ids]
    for p in paths:
        with PILImage.open(p) as im:
            im.verify()
    assert emu.request_count(origin="cdn") - cdn_before == 5
    starts = sorted(r.time for r in emu.requests if r.origin == "cdn")[-5:]
    # all five requests reached the CDN before the first answer could have
    assert starts[-1] - starts[0] < 0.25, starts
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in paths)


def test_saved_files_follow_the_umask(uni1_emulator, tmp_path):
    job = uni1_emulator.client().generate("mode")
    old = os.umask(0o027)
    try:
        (path,) = job.download(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_existing_file_stops_all_before_any_transfer(uni1_emulator, tmp_path):
    emu = uni1_emulator
    emu.outputs_per_job = 3
    job = emu.client().generate("three")
    job.wait(timeout=30)
    taken = tmp_path / f"{job.asset_ids[1]}.png"
    taken.write_bytes(b"mine")
    cdn_before = emu.request_count(origin="cdn")
    with pytest.raises(FileExistsError):
        job.download(tmp_path)
    assert emu.request_count(origin="cdn") == cdn_before
    assert taken.read_bytes() == b"mine"
    assert sorted(os.listdir(tmp_path)) == [taken.name]
    paths = job.download(tmp_path, overwrite=True)
    assert len(paths) == 3 and taken.read_bytes()[:4] == b"\x89PNG"


def test_one_failing_asset_leaves_no_partial_file(uni1_emulator, tmp_path):
    emu = uni1_emulator
    emu.outputs_per_job = 3
    client = uni1.Client(
        emu.api_key, emu.api_secret, base_url=emu.url, max_retries=1, backoff_base=0.01
    )
    job = client.generate("one breaks")
    job.wait(timeout=30)
    broken = job.asset_ids[2]
    # that asset's CDN object is always cut short (truncated body)
    url = client.get_asset(broken)["url"]
    cdn_path = url.split("://", 1)[1].split("/", 1)[1].split("?")[0]
    emu.inject(origin="cdn", path="/" + cdn_path, action="truncate", times=None)
    with pytest.raises(uni1.Uni1Error):
        job.download(tmp_path)
    names = os.listdir(tmp_path)
    assert f"{broken}.png" not in names
    assert not [n for n in names if n.endswith(".part")], names
    for n in names:  # whatever was saved is whole
        with PILImage.open(tmp_path / n) as im:
            im.verify()
