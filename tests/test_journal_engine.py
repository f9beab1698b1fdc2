"""The journal on the engine: Client.submit and generate_many with Client(journal=path).

Journal.start_generation records an item before the engine uploads its
inputs; the blocking path (generate, resume) must read such rows right.
"""

from __future__ import annotations

import hashlib
import sqlite3

import pytest
from conftest import png_bytes

from scenario_uni1 import _journal


def rows(path) -> list[dict]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        db.row_factory = sqlite3.Row
        return [
            dict(r) for r in db.execute("SELECT * FROM submissions ORDER BY created, occurrence")
        ]
    finally:
        db.close()


@pytest.fixture
def journal(tmp_path):
    return str(tmp_path / "journal.db")


def test_row_recorded_before_its_uploads_is_sent_by_the_blocking_path_and_resume(
    emu, journal, tmp_path
):
    # start_generation records an item with inputs to upload before the
    # engine uploads them: its row holds their content hashes, not asset ids.
    # generate() and resume() on such a row left 'sending' must not take those
    # for a request to look for; generate() sends it (nothing matches it).
    ref = png_bytes(color=(4, 5, 6))
    key = {"sha256": hashlib.sha256(ref).hexdigest(), "mime_type": "image/png"}
    request = {
        "prompt": "a kite",
        "source": None,
        "image_refs": [key],
        "aspect_ratio": None,
        "output_format": "png",
        "web_search": False,
    }
    fp = _journal.fingerprint({**request, "project_id": None})
    with emu.client(journal=journal) as c:
        c._journal._begin_sending(fp, 1, request)
        assert c.resume(timeout=10) == []
    assert rows(journal) == []
    with emu.client(journal=journal) as c:
        c._journal._begin_sending(fp, 1, request)
    with emu.client(journal=journal) as c:
        job = c.generate("a kite", image_refs=[ref])
    (row,) = rows(journal)
    assert row["fingerprint"] == fp and row["job_id"] == job.id
    assert emu.jobs_created == 1
