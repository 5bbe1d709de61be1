"""Resumable downloads against a real HTTP server on 127.0.0.1 (tests/fixtures/file_server)."""

from __future__ import annotations

import os

import pytest

from model_store.download import DownloadError, RetryPolicy, content_length, fetch
from tests.fixtures.file_server import FileServer, etag_of

FAST = RetryPolicy(retries=3, backoff_s=0.01, timeout_s=10)
DATA = os.urandom(300_000)


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    root = tmp_path / "served"
    root.mkdir()
    (root / "w.bin").write_bytes(DATA)
    server = FileServer(root).start()
    yield server
    server.stop()


def test_plain_download(files, tmp_path):
    part = tmp_path / "out" / "w.bin.part"
    got = fetch(f"{files.url}/w.bin", part, FAST, progress=False)
    assert part.read_bytes() == DATA
    assert (got.size, got.fetched, got.resumed_from) == (len(DATA), len(DATA), 0)
    assert [r.status for r in files.requests] == [200]


def test_broken_off_download_is_resumed_with_a_range_request(files, tmp_path):
    files.cut_after["/w.bin"] = 100_000
    part = tmp_path / "w.bin.part"
    received = []
    got = fetch(f"{files.url}/w.bin", part, FAST, progress=False, on_bytes=received.append)
    assert part.read_bytes() == DATA
    first, second = files.requests
    assert (first.range, first.status) == (None, 200)
    assert (second.range, second.if_range, second.status) == (
        "bytes=100000-", etag_of(DATA), 206)
    # Only the missing bytes travel a second time.
    assert got.fetched == sum(received) == len(DATA)


def test_a_failed_run_keeps_its_part_and_the_next_run_resumes(files, tmp_path):
    files.cut_after["/w.bin"] = 120_000
    part = tmp_path / "w.bin.part"
    with pytest.raises(DownloadError, match="120000 bytes kept") as failed:
        fetch(f"{files.url}/w.bin", part, RetryPolicy(retries=0), progress=False)
    assert "connection closed after 120000 of 300000 bytes" in str(failed.value)
    assert part.stat().st_size == 120_000
    got = fetch(f"{files.url}/w.bin", part, FAST, progress=False)
    assert part.read_bytes() == DATA
    assert (got.resumed_from, got.fetched) == (120_000, len(DATA) - 120_000)
    assert files.requests[-1].range == "bytes=120000-"


def test_a_file_changed_on_the_server_is_fetched_whole_not_spliced(files, tmp_path):
    files.cut_after["/w.bin"] = 50_000
    part = tmp_path / "w.bin.part"
    with pytest.raises(DownloadError):
        fetch(f"{files.url}/w.bin", part, RetryPolicy(retries=0), progress=False)
    changed = os.urandom(200_000)
    (files.root / "w.bin").write_bytes(changed)
    fetch(f"{files.url}/w.bin", part, FAST, progress=False)
    assert part.read_bytes() == changed
    # If-Range carried the old ETag, so the server sent the new file whole.
    assert files.requests[-1].if_range == etag_of(DATA) and files.requests[-1].status == 200


def test_transient_errors_are_retried_with_backoff(files, tmp_path):
    files.fail_with["/w.bin"] = [503, 502]
    part = tmp_path / "w.bin.part"
    fetch(f"{files.url}/w.bin", part, FAST, progress=False)
    assert part.read_bytes() == DATA
    assert [r.status for r in files.requests] == [503, 502, 200]


def test_not_found_fails_at_once(files, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(f"{files.url}/absent.bin", tmp_path / "absent.part", FAST, progress=False)
    assert len(files.requests) == 1


def test_giving_up_after_the_retries(files, tmp_path):
    files.fail_with["/w.bin"] = [503] * 5
    with pytest.raises(DownloadError, match="HTTP 503.*gave up after 3 attempts"):
        fetch(f"{files.url}/w.bin", tmp_path / "w.part", RetryPolicy(retries=2, backoff_s=0.01),
              progress=False)


def test_backoff_doubles_up_to_its_cap():
    policy = RetryPolicy(backoff_s=1.0, max_backoff_s=5.0)
    assert [policy.wait_s(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]


def test_content_length_from_head(files):
    assert content_length(f"{files.url}/w.bin") == len(DATA)
    assert content_length(f"{files.url}/absent.bin") is None
    assert files.requests[0].method == "HEAD"
