"""The cache commands as a person runs them: `info`, `verify` and `export` with progress bars, `info` as text; a
store that fails on the way (unreachable, no credentials, a read-only or full disk) is one line."""

from __future__ import annotations

from oczss.cache.export import export_hdf5
from oczss.cache.info import cache_info
from oczss.cache.location import reaching
from oczss.cache.schema import DINO_FPS
from oczss.cache.store import MaskCache
from oczss.cache.verify import verify
from oczss.model.weights import RANDOM_NOTE
from oczss.pipeline.console import progress


def _shards(url: str) -> int:
    return MaskCache.open(url).shard_count()


def info(url: str) -> dict:
    """cache_info with a progress bar over the shards it reads."""
    with reaching(url), progress(_shards(url), desc="cache info", unit="shard") as bar:
        return cache_info(url, on_shard=lambda: bar.update(1))


def check(url: str, partial: bool = False) -> list[str]:
    """verify with a progress bar."""
    with reaching(url), progress(_shards(url), desc="cache verify", unit="shard") as bar:
        return verify(url, partial=partial, on_shard=lambda: bar.update(1))


def export(url: str, out: str) -> str:
    """export_hdf5 with a progress bar."""
    with progress(_shards(url), desc="cache export", unit="shard") as bar:
        return export_hdf5(url, out, on_shard=lambda: bar.update(1))


def format_info(info: dict) -> str:
    """The text of `oczss cache info`."""
    lines = [f"cache {info['cache']}", *_header(info), f"  created {info['created']} by oczss {info['oczss_version']}"]
    if not info["splits"]:
        lines.append("  (no datasets yet)")
    for s in info["splits"]:
        if "error" in s or "unfinished" in s:
            lines.append(f"{s['dataset']}/{s['split']}: " + (f"DAMAGED: {s['error']}" if "error" in s else
                                                              f"NOT CREATED YET: {s['unfinished']}"))
            continue
        lines.append(f"{s['dataset']}/{s['split']}: {s['images']} images: {s['done']} done, {s['missing']} missing, "
                     f"{s['failed']} failed; shards {s['shards_done']}/{s['shards']}; "
                     f"{_size(s['bytes'])} on disk ({_size(s['bytes_per_image'])}/image)  root {s['data_root']}")
        for k, c in s["clusters"].items():
            if not c["images"]:
                lines.append(f"  K={k}: no done images yet")
                continue
            q = "  ".join(f"{name} {100 * v:.1f}%" for name, v in c["size_quantiles"].items())
            lines.append(f"  K={k}: empty clusters {100 * c['empty_share']:.1f}%; cluster size (share of grid) {q}")
        if s["damaged"]:
            lines.append(f"  DAMAGED: {len(s['damaged'])} problem(s), left out of the statistics; run "
                         f"`oczss cache verify --cache {info['cache']}`")
            lines += [f"    {p}" for p in s["damaged"][:10]]
        for image_id, why in list(s["failed_images"].items())[:20]:
            lines.append(f"  failed {image_id}: {why}")
        if len(s["failed_images"]) > 20:
            lines.append(f"  … and {len(s['failed_images']) - 20} more failed (see --json)")
    return "\n".join(lines)


def _header(info: dict) -> list[str]:
    """The lines naming the cache's source, its model and its parameters."""
    p, source = info["params"], info.get("source", DINO_FPS)
    random = f", {RANDOM_NOTE}" if info["random_weights"] else ""
    if source == DINO_FPS:
        return [f"  source dino-fps: DINO {p['dino_model']} (weights {p['fingerprint'][:12]}…{random})",
                f"  R={p['input_size']}  S={p['grid']}  K={','.join(map(str, p['ks']))}  seed={p['seed']}  "
                f"{p['device']} {p['dtype']}  {p['shard_size']} images/shard"]
    model = p.get("clip_model") or p.get("vision_model")
    rest = {k: v for k, v in p.items() if k not in ("clip_model", "vision_model", "fingerprint", "arrays", "view",
                                                     "random_weights", "shard_size")}
    arrays = "  ".join(f"{name} {a['dtype']} {a['shape']}" for name, a in p["arrays"].items())
    return [f"  source {source}: {model} (weights {p['fingerprint'][:12]}…{random})",
            "  " + "  ".join(f"{k}={_value(v)}" for k, v in rest.items()) + f"  {p['shard_size']} images/shard",
            f"  per image: {arrays}", f"  view: {p.get('view', '?')}"]


def _value(v) -> str:
    if isinstance(v, dict):
        return "(" + " ".join(f"{k}={_value(x)}" for k, x in v.items()) + ")"
    if isinstance(v, list):
        return ",".join(f"{x:.3g}" if isinstance(x, float) else str(x) for x in v)
    return str(v)


def _size(n: float) -> str:
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"
