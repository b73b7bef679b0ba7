"""Nothing done becomes unusable, and what a store or a disk refuses is one line: a precompute killed while creating
a split, the lease under a racing reader, checks before the first byte, metadata changed under the records,
unreachable stores, unwritable folders, full disks. The kill and the lease race run as real processes."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import numpy as np
import pytest
import zarr
from fsspec.implementations.memory import MemoryFileSystem

from oczss.cache.lock import WriterLock, lock_url, read_holder
from oczss.cache.store import MaskCache
from oczss.cache.verify import verify
from oczss.errors import OCZSSError
from oczss.pipeline.stage1.inspect import info
from oczss.pipeline.stage1.precompute import precompute
from test_cache_integrity import built, copy, run  # noqa: F401 - fixtures
from test_precompute import FLAGS, assert_same, snapshot, tiny

UNWRITABLE = Path("/sys/oczss-test")  # sysfs refuses to create anything there, even for root


KILL_WHILE_CREATING = r'''
import os, signal, sys
from oczss.cache import store
from oczss.cli import main

def killed(ids):  # called right after the split's group (zarr.json, no metadata yet) is created
    os.kill(os.getpid(), signal.SIGKILL)

store.encode_ids = killed
main(sys.argv[1:])
'''


def test_a_precompute_killed_while_creating_a_split_is_completed_by_the_rerun(demo_root, tmp_path):
    cache = tmp_path / "c.zarr"
    precompute(tiny(demo_root, cache, split="train"), progress=False)
    killed = subprocess.run([sys.executable, "-c", KILL_WHILE_CREATING, "precompute", *FLAGS, "--data-root",
                             str(demo_root), "--split", "val", "--cache", str(cache)], capture_output=True, timeout=300)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    group = json.loads((cache / "demo" / "val" / "zarr.json").read_text())
    assert "oczss" not in group.get("attributes", {})  # half created
    shown = run("cache", "info", "--cache", cache)
    assert shown.exit_code == 0 and "demo/val: NOT CREATED YET" in shown.output and "rebuild" not in shown.output
    assert "demo/train: 48 images: 48 done" in shown.output  # the finished split is untouched
    assert verify(str(cache), partial=True) == [] and verify(str(cache))
    summary = precompute(tiny(demo_root, cache, split="val"), progress=False)  # the rerun creates it again
    assert summary.shards_run == 4 and summary.shards_skipped == 0
    precompute(tiny(demo_root, tmp_path / "whole.zarr", split="all"), progress=False)
    assert_same(snapshot(str(cache)), snapshot(str(tmp_path / "whole.zarr")))


HOLD = r'''
import sys, time
from oczss.cache.lock import WriterLock

with WriterLock(sys.argv[1], heartbeat=0.0005):  # rewrites its lease about 2000 times a second
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
'''


def test_readers_never_see_a_lease_half_written_while_its_holder_renews_it(tmp_path):
    url = str(tmp_path / "c.zarr")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, url, "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n", holder.stderr.read().decode()
        fs, path = fsspec.url_to_fs(lock_url(url))
        beats, refusals = set(), 0
        deadline = time.time() + 1.5
        while time.time() < deadline:
            lease = read_holder(fs, path)
            assert lease and lease["pid"] == holder.pid, lease  # never empty, never garbled
            beats.add(lease["heartbeat"])
            with pytest.raises(OCZSSError) as refused:
                WriterLock(url).acquire()
            assert "being written by another run" in str(refused.value)
            refusals += 1
        assert len(beats) > 20 and refusals > 20  # the race did happen
    finally:
        holder.kill()
        holder.wait()


def test_an_unreadable_lease_is_held_by_an_unknown_writer_until_it_is_old(demo_root, tmp_path):
    cache = tmp_path / "c.zarr"
    lock = Path(lock_url(str(cache)))
    lock.write_text("")  # emptied, or garbled by something else
    result = run("precompute", *FLAGS, "--data-root", demo_root, "--split", "val", "--cache", cache)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "cannot be read" in result.output and "--force-unlock" in result.output
    assert lock.read_text() == "" and not cache.exists()  # refused before anything was written
    lock.write_text("[1, 2]")
    with pytest.raises(OCZSSError, match="cannot be read"):
        WriterLock(str(cache)).acquire()
    old = time.time() - 3600
    os.utime(lock, (old, old))  # older than the lease: abandoned
    with WriterLock(str(cache)) as lease:
        assert json.loads(lock.read_text())["token"] == lease.token
    assert not lock.exists()


def test_flags_that_would_fail_are_refused_before_the_first_byte(demo_root, tmp_path):
    cache = tmp_path / "c.zarr"
    with pytest.raises(OCZSSError, match="--feature-dim 100 exceeds the 48 channels of tiny"):
        precompute(tiny(demo_root, cache, split="val", feature_dim=100), progress=False)
    assert not cache.exists() and not Path(lock_url(str(cache))).exists()
    precompute(tiny(demo_root, cache, split="val", feature_dim=16), progress=False)  # the corrected command
    assert MaskCache.open(str(cache)).params.feature_dim == 16


def test_records_bind_the_basis_and_the_parameters(copy, demo_root):
    from oczss.pipeline.data.datasets import Dataset
    from oczss.pipeline.stage2.clusters import open_cached

    basis = zarr.open_array(str(Path(copy) / "demo" / "feature_basis"), mode="r+")
    basis[:] = np.asarray(basis[:])[::-1]  # permuted rows: the same numbers, another basis
    problems = verify(copy)
    assert problems and all("basis" in p for p in problems)
    samples = Dataset("demo", str(demo_root)).samples("val")
    with pytest.raises(OCZSSError, match=r"basis .*changed after its shards were written.*cache verify"):
        open_cached(samples, copy, "demo", "val", "view", 3)  # training and eval refuse it before any work
    assert len(open_cached(samples, copy, "demo", "val", "whole", 3)[0]) == 16  # the labels do not depend on it


def test_a_changed_k_list_and_shard_count_are_flagged(copy):
    root = zarr.open_group(copy, mode="r+")
    meta = dict(root.attrs["oczss"])
    root.attrs["oczss"] = {**meta, "params": {**meta["params"], "ks": [3]}}  # labels_k5 no longer described
    problems = "\n".join(verify(copy))
    assert "labels_k5 are not described by the cache's parameters" in problems
    assert "the cache's parameters (its zarr.json) does not match the completion record" in problems
    root.attrs["oczss"] = meta
    split = zarr.open_group(copy, path="demo/val", mode="r+")
    split.attrs["oczss"] = {**split.attrs["oczss"], "num_shards": 3}
    damaged = info(copy)["splits"][0]["damaged"]
    assert "demo/val: metadata says 3 shards, 16 images in shards of 4 make 4" in damaged
    assert any("metadata says 3 shards" in p for p in verify(copy))


class NoCredentialsError(Exception):
    """Stands for botocore's: an exception of the store's own library, not of oczss."""


class FlakyFS(MemoryFileSystem):
    """memory://, except that any path containing `FlakyFS.failing` raises `FlakyFS.error`."""

    protocol = "flaky"
    failing, error = None, None

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.removeprefix("flaky://") if isinstance(path, str) else path)

    def _check(self, path):
        if FlakyFS.failing and FlakyFS.failing in str(path):
            raise FlakyFS.error

    def exists(self, path, **kw):
        self._check(path)
        return super().exists(path, **kw)

    def _open(self, path, *a, **kw):
        self._check(path)
        return super()._open(path, *a, **kw)

    def cat_file(self, path, *a, **kw):
        self._check(path)
        return super().cat_file(path, *a, **kw)


@pytest.mark.parametrize("error, says", [
    (ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9)"), "the store cannot be reached"),
    (NoCredentialsError("Unable to locate credentials"), "no credentials for the store")])
def test_an_unreachable_store_or_missing_credentials_are_one_line(demo_root, error, says):
    fsspec.register_implementation("flaky", FlakyFS, clobber=True)
    FlakyFS.failing, FlakyFS.error = "unreachable.zarr", error
    try:
        result = run("cache", "info", "--cache", "flaky://bucket/unreachable.zarr")
        assert result.exit_code == 2 and says in result.output and len(result.output.strip().splitlines()) == 1
        FlakyFS.failing = "lease.zarr.lock"  # the store answers, the lease cannot be created
        result = run("precompute", *FLAGS, "--data-root", demo_root, "--split", "val", "--cache",
                     "flaky://bucket/lease.zarr")
        assert result.exit_code == 2 and says in result.output and "Traceback" not in result.output
        assert "flaky://bucket/lease.zarr.lock" in result.output
    finally:
        FlakyFS.failing = None


def test_unwritable_folders_are_refused_before_any_work(demo_stage1, demo_root, tmp_path):
    s = demo_stage1
    result = run("train", "--config", "demo", "--data-root", s["root"], "--cache", s["cache"], "--text", s["text"],
                 "--out", UNWRITABLE / "run", "--iters", 1, "--workers", 0, "--device", "cpu")
    assert result.exit_code == 2 and result.output.startswith(f"error: --out {UNWRITABLE / 'run'}: cannot write there")
    assert "Permission denied (EACCES)" in result.output and len(result.output.strip().splitlines()) == 1
    result = run("data", "prepare", "demo", "--out", UNWRITABLE / "demo")
    assert result.exit_code == 2 and "--out /sys/oczss-test/demo: cannot write there" in result.output
    result = run("eval", "--checkpoint", tmp_path / "none.pt", "--dataset", "demo", "--json", UNWRITABLE / "r.json")
    assert result.exit_code == 2 and "--json /sys/oczss-test: cannot write there" in result.output  # before the work
    result = run("precompute", *FLAGS, "--data-root", demo_root, "--split", "val", "--cache", UNWRITABLE / "c.zarr")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1] == ("error: cache /sys/oczss-test/c.zarr.lock: /sys/oczss-test: "
                                                      "Operation not permitted (EPERM)")  # its writer lock: the first byte
    result = run("cache", "export", UNWRITABLE / "c.h5", "--cache", s["cache"])  # an OSError met in the work
    assert result.exit_code == 2 and "/sys/oczss-test" in result.output and "Traceback" not in result.output


def test_a_full_disk_is_one_line_naming_the_file(demo_stage1, tmp_path, monkeypatch):
    import builtins

    from oczss.pipeline.evaluation import write_json
    from oczss.pipeline.stage2 import checkpoint

    with pytest.raises(OCZSSError, match=r"cannot write /dev/full: No space left on device \(ENOSPC\)"):
        write_json({"mIoU": 1.0}, "/dev/full")
    monkeypatch.setattr(checkpoint, "open", lambda path, mode: builtins.open("/dev/full", mode), raising=False)
    s = demo_stage1
    result = run("train", "--config", "demo", "--data-root", s["root"], "--cache", s["cache"], "--text", s["text"],
                 "--out", tmp_path / "run", "--iters", 1, "--batch-size", 2, "--workers", 0, "--device", "cpu")
    last = tmp_path / "run" / "last.pt"
    line = result.output.strip().splitlines()[-1]
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert line.startswith("error: training stopped at iteration 1: "), result.output
    assert f"{last}: No space left on device (ENOSPC)" in line and "saving" in line
    assert not list((tmp_path / "run").glob("*.partial"))
