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


# A full disk, as a child process meets it: the file size limit (RLIMIT_FSIZE)
# makes write(2) fail with EFBIG past `limit` bytes of any one file (Python
# ignores SIGXFSZ),
# which the core sees exactly as it sees ENOSPC. The job crosses as a pickle
# and binds to a client built from the child's environment.
_FULL_DISK_CHILD = """
import os, pickle, resource, sys
import scenario_uni1 as uni1
job = pickle.loads(bytes.fromhex(sys.argv[1]))
dest, limit = sys.argv[2], int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
try:
    job.download(dest)
except OSError as e:
    print("OSError", e.errno)
else:
    print("saved")
"""


def _download_in_full_disk_child(emu, job, dest, limit):
    import errno
    import pickle
    import subprocess
    import sys

    from conftest import PACKAGE_PARENT

    env = dict(os.environ, **emu.env(), PYTHONPATH=PACKAGE_PARENT)
    out = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_CHILD, pickle.dumps(job).hex(), str(dest), str(limit)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split(), errno


def test_full_disk_fails_cleanly_and_publishes_nothing(uni1_emulator, tmp_path):
    emu = uni1_emulator
    emu.outputs_per_job = 3
    job = emu.client().generate("a full disk", aspect_ratio="16:9")
    job.wait(timeout=30)
    sizes = [len(img.data) for img in job.images()]
    # the limit is per file: each transfer runs out of room half way
    words, errno = _download_in_full_disk_child(emu, job, tmp_path, min(sizes) // 2)
    assert words[0] == "OSError" and int(words[1]) in (errno.EFBIG, errno.ENOSPC), words
    assert os.listdir(tmp_path) == []  # no partial file, no temporary file
    # the same download with room to spare gets every file
    words, _ = _download_in_full_disk_child(emu, job, tmp_path, 64 << 20)
    assert words == ["saved"]
    assert len(os.listdir(tmp_path)) == 3
