"""The cache's integrity: one writer at a time (two real processes), shards that are all zero, a second Zarr
implementation reading it, and damage that every reader reports (verify, info, training) instead of using."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from oczss.cache.lock import WriterLock, lock_url
from oczss.cache.split import DONE, FAILED
from oczss.cache.store import MaskCache
from oczss.cache.verify import verify
from oczss.cli import main
from oczss.errors import OCZSSError
from oczss.pipeline.stage1.inspect import info
from oczss.pipeline.stage1.precompute import precompute
from test_precompute import FLAGS, tiny


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def built(demo_root, tmp_path_factory) -> str:
    url = str(tmp_path_factory.mktemp("integrity") / "c.zarr")
    precompute(tiny(demo_root, url, split="val"), progress=False)
    return url


@pytest.fixture
def copy(built, tmp_path) -> str:
    url = str(tmp_path / "copy.zarr")
    shutil.copytree(built, url)
    return url


def _blocked_copy(demo_root: Path, where: Path) -> Path:
    """A copy of the demo whose first val image is a FIFO: a precompute reading it waits until it is written."""
    root = where / "demo"
    shutil.copytree(demo_root, root)
    fifo = root / "val2017" / "val_0000.jpg"
    fifo.unlink()
    os.mkfifo(fifo)
    return root


def test_two_writers_started_at_once_one_is_refused_before_writing(demo_root, tmp_path):
    cache = tmp_path / "shared.zarr"
    roots = [_blocked_copy(demo_root, tmp_path / f"r{i}") for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-m", "oczss", "precompute", *FLAGS, "--data-root", str(root),
                               "--split", "val", "--seed", str(seed), "--feature-dim", "0", "--cache", str(cache)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for seed, root in enumerate(roots)]
    try:
        deadline = time.time() + 120
        while all(p.poll() is None for p in procs):  # the loser exits, the winner waits on its FIFO
            assert time.time() < deadline
            time.sleep(0.1)
        loser = next(i for i, p in enumerate(procs) if p.poll() is not None)
        winner = 1 - loser
        err = procs[loser].stderr.read().decode()
        assert procs[loser].returncode == 2, err  # by the lease, or (the winner's cache exists) by its parameters
        assert "being written by another run" in err or "seed: cache has" in err, err
        holder = json.loads(Path(lock_url(str(cache))).read_text())
        assert holder["pid"] == procs[winner].pid
        original = (demo_root / "val2017" / "val_0000.jpg").read_bytes()
        with open(roots[winner] / "val2017" / "val_0000.jpg", "wb") as f:  # unblocks the winner
            f.write(original)
        assert procs[winner].wait(timeout=120) == 0, procs[winner].stderr.read().decode()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert verify(str(cache)) == [] and not Path(lock_url(str(cache))).exists()
    assert MaskCache.open(str(cache)).params.seed == winner


def test_lease_rules(tmp_path):
    url = str(tmp_path / "c.zarr")
    with WriterLock(url):
        with pytest.raises(OCZSSError, match="being written by another run.*--force-unlock"):
            WriterLock(url).acquire()
        thief = WriterLock(url, force=True)
        thief.acquire()  # --force-unlock: the first writer's commits are now refused
        from oczss.cache.lock import check_holder

        check_holder(url, thief.token)
        thief.release()
    stale = {"token": "x", "host": "elsewhere", "pid": 1, "started": 0, "heartbeat": time.time() - 10_000}
    Path(lock_url(url)).write_text(json.dumps(stale))
    with WriterLock(url) as lease:  # an expired lease is taken over
        assert json.loads(Path(lock_url(url)).read_text())["token"] == lease.token


def test_k1_and_a_shard_of_only_corrupt_images(demo_root, tmp_path):
    root = tmp_path / "demo"
    shutil.copytree(demo_root, root)
    for i in range(4):  # shard 0 of the val split (shard size 4)
        (root / "val2017" / f"val_000{i}.jpg").write_bytes(b"not an image")
    url = str(tmp_path / "c.zarr")
    summary = precompute(tiny(root, url, split="val", ks=(1,)), progress=False)
    assert summary.shards_run == 4 and len(summary.failed["val"]) == 4
    sc = MaskCache.open(url).split("demo", "val")
    status = sc.status()
    assert (status[:4] == FAILED).all() and (status[4:] == DONE).all()
    for shard in range(4):  # every shard object exists, all-zero ones included
        assert (Path(url) / "demo" / "val" / "labels_k1" / "c" / str(shard) / "0" / "0").is_file()
    assert verify(url) == []
    assert precompute(tiny(root, url, split="val", ks=(1,)), progress=False).shards_run == 0
    again = precompute(tiny(root, url, split="val", ks=(1,), retry_failed=True), progress=False)
    assert again.shards_run == 1  # only the shard that recorded failures


def test_a_second_zarr_implementation_reads_the_whole_cache(built):
    import tensorstore as ts

    sc = MaskCache.open(built).split("demo", "val")

    def read(name):
        spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": f"{built}/demo/val/{name}/"}}
        return ts.open(spec, read=True).result().read().result()

    for k in (3, 5):
        assert np.array_equal(read(f"labels_k{k}"), np.asarray(sc.labels(k)[:]))
    ids = [bytes(row).rstrip(b"\0").decode() for row in read("ids")]
    assert ids == sc.ids
    records = [json.loads(bytes(row).rstrip(b"\0")) for row in read("records")]
    assert [r["rows"] for r in records] == [[0, 4], [4, 8], [8, 12], [12, 16]]
    meta = json.loads((Path(built) / "demo" / "val" / "labels_k3" / "zarr.json").read_text())
    assert meta["dimension_names"] == ["image", "y", "x"]


def _shard_file(url: str, k: int, shard: int) -> Path:
    return Path(url) / "demo" / "val" / f"labels_k{k}" / "c" / str(shard) / "0" / "0"


def _flip_until_it_still_decodes(url: str, k: int, shard: int) -> None:
    """Flip one byte of a shard object so that it still decodes, to other values."""
    path = _shard_file(url, k, shard)
    original = path.read_bytes()
    before = np.asarray(MaskCache.open(url).split("demo", "val").labels(k)[4 * shard:4 * shard + 4])
    for pos in range(len(original) // 4, len(original) - 64):
        data = bytearray(original)
        data[pos] ^= 0x01
        path.write_bytes(bytes(data))
        try:
            after = np.asarray(zarr.open_array(str(Path(url) / "demo" / "val" / f"labels_k{k}"))[4 * shard:4 * shard + 4])
        except Exception:  # noqa: BLE001 - this flip breaks decoding; try the next byte
            continue
        if not np.array_equal(after, before) and after.max() < k:
            return
    raise AssertionError("no byte flip decodes to other valid labels")


DAMAGE = {
    "deleted shard": lambda url: _shard_file(url, 3, 1).unlink(),
    "swapped shards": lambda url: (_shard_file(url, 5, 1).rename(_shard_file(url, 5, 1).with_suffix(".x")),
                                   _shard_file(url, 5, 2).rename(_shard_file(url, 5, 1)),
                                   _shard_file(url, 5, 1).with_suffix(".x").rename(_shard_file(url, 5, 2))),
    "labels >= K": lambda url: MaskCache.open(url, writable=True).split("demo", "val").labels(3).__setitem__(
        (5, 0, 0), 9),
    "byte flip": lambda url: _flip_until_it_still_decodes(url, 5, 2),
    "swapped ids": lambda url: _swap_ids(url),
}


def _swap_ids(url: str) -> None:
    arr = zarr.open_array(str(Path(url) / "demo" / "val" / "ids"), mode="r+")
    ids = np.asarray(arr[:])
    arr[:] = ids[[1, 0] + list(range(2, len(ids)))]


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_every_reader_reports_damage(copy, damage):
    DAMAGE[damage](copy)
    problems = verify(copy)
    assert problems, damage
    report = info(copy)
    assert report["splits"][0]["damaged"], damage  # reported, not a traceback
    from oczss.pipeline.stage2.clusters import CachedMaps

    sc = MaskCache.open(copy).split("demo", "val")
    k = 3 if damage in ("deleted shard", "labels >= K", "swapped ids") else 5
    maps = CachedMaps(copy, "demo", "val", f"labels_k{k}")
    with pytest.raises(OCZSSError, match=r"damaged.*oczss cache verify"):
        for image_id in sc.ids:
            maps.get(image_id)
    skipping = CachedMaps(copy, "demo", "val", f"labels_k{k}", skip_damaged=True)
    got = [skipping.get(i) for i in sc.ids]
    assert any(g is None for g in got) and any(g is not None for g in got)


def test_metadata_damage_and_bad_urls_are_one_line_errors(copy, tmp_path):
    (Path(copy) / "demo" / "val" / "labels_k3" / "zarr.json").write_text("{ not json")
    result = run("cache", "verify", "--cache", copy)
    assert result.exit_code != 0 and "Traceback" not in result.output and "labels_k3" in result.output
    result = run("cache", "info", "--cache", copy)
    assert result.exit_code == 0 and "DAMAGED" in result.output
    (Path(copy) / "zarr.json").write_text("{ not json")
    result = run("cache", "verify", "--cache", copy)
    assert result.exit_code == 2 and "zarr.json (root metadata) is damaged" in result.output
    result = run("cache", "info", "--cache", "nope://x/y")
    assert result.exit_code == 2 and "unknown storage protocol 'nope'" in result.output


def test_verify_reports_an_unfinished_shard_unless_partial(copy):
    arr = zarr.open_array(str(Path(copy) / "demo" / "val" / "records"), mode="r+")
    arr[2] = 0  # shard 2 has its data but no record: 4 images not done
    result = run("cache", "verify", "--cache", copy)
    assert result.exit_code == 1 and "shard 2 (rows 8:12): not finished" in result.output
    assert run("cache", "verify", "--cache", copy, "--partial").exit_code == 0
    assert run("cache", "info", "--cache", copy).output.count("12 done, 4 missing") == 1


def test_paths_are_resolved_on_the_client_and_a_missing_image_is_an_error_of_the_run(demo_root, tmp_path, monkeypatch):
    from oczss.model.dino import load_dino
    from oczss.pipeline.stage1.precompute import cache_params, check_inputs, plan

    root = tmp_path / "demo"
    shutil.copytree(demo_root, root)
    monkeypatch.chdir(tmp_path)
    cfg = tiny(Path("demo"), "rel.zarr", split="val")  # relative, as a user types them
    model = load_dino("tiny", "random", 64, dynamic=True)
    jobs, _ = plan(cfg, "token", model, cache_params(cfg, model, "cpu"), check_inputs(cfg))
    assert all(Path(job.cache).is_absolute() and all(Path(p).is_absolute() for p in job.paths) for job in jobs)
    assert jobs[0].device == "auto" and jobs[0].params.device == "cpu"  # each worker resolves auto to this type
    from conftest import make_voc

    voc = make_voc(tmp_path / "VOC2012", val=("d", "e"))  # listed in val.txt, so a missing file is missing
    (voc / "JPEGImages" / "e.jpg").unlink()
    with pytest.raises(OCZSSError, match=r"1 image file\(s\).*do not exist: .*e.jpg"):
        precompute(tiny(voc, tmp_path / "voc.zarr", dataset="voc", split="val"), progress=False)
    assert not (tmp_path / "voc.zarr").exists()  # refused before anything was written


def test_object_store_errors_are_one_line(tmp_path, built):
    pytest.importorskip("fsspec")
    result = run("cache", "info", "--cache", "s3://bucket/oczss.zarr")
    assert result.exit_code == 2 and "needs s3fs (pip install 'oczss[s3]')" in result.output
    assert run("cache", "export", "memory://out/c.h5", "--cache", built).exit_code == 0
    import fsspec
    import h5py

    with fsspec.open("memory://out/c.h5", "rb") as f, h5py.File(f, "r") as h5:
        assert h5["demo/val/labels_k3"].shape == (16, 8, 8) and "features" in h5["demo/val"]
    assert not list(Path.cwd().glob("memory:*"))  # no local folder named after the URL


def test_a_cache_of_an_older_schema_is_refused_with_the_command_to_rebuild(copy):
    root = zarr.open_group(copy, mode="r+")
    meta = dict(root.attrs["oczss"])
    root.attrs["oczss"] = {**meta, "schema_version": 2}
    result = run("cache", "info", "--cache", copy)
    assert result.exit_code == 2 and "schema version 2" in result.output and "rebuild" in result.output
