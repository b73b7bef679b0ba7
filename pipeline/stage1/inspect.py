"""The cache commands as a person runs them: `info` as text, `verify` and `export` with progress bars."""

from __future__ import annotations

from oczss.model.weights import RANDOM_NOTE


def format_info(info: dict) -> str:
    p = info["params"]
    lines = [f"cache {info['cache']}",
             f"  DINO {p['dino_model']} (weights {p['fingerprint'][:12]}…"
             + (f", {RANDOM_NOTE}" if info["random_weights"] else "") + ")",
             f"  R={p['input_size']}  S={p['grid']}  K={','.join(map(str, p['ks']))}  seed={p['seed']}  "
             f"{p['device']} {p['dtype']}  {p['shard_size']} images/shard",
             f"  created {info['created']} by oczss {info['oczss_version']}"]
    if not info["splits"]:
        lines.append("  (no datasets yet)")
    for s in info["splits"]:
        lines.append(f"{s['dataset']}/{s['split']}: {s['images']} images: {s['done']} done, {s['missing']} missing, "
                     f"{s['failed']} failed; shards {s['shards_done']}/{s['shards']}; "
                     f"{_size(s['bytes'])} on disk ({_size(s['bytes_per_image'])}/image)  root {s['data_root']}")
        for k, c in s["clusters"].items():
            if not c["images"]:
                lines.append(f"  K={k}: no done images yet")
                continue
            q = "  ".join(f"{name} {100 * v:.1f}%" for name, v in c["size_quantiles"].items())
            lines.append(f"  K={k}: empty clusters {100 * c['empty_share']:.1f}%; cluster size (share of grid) {q}")
        for image_id, why in list(s["failed_images"].items())[:20]:
            lines.append(f"  failed {image_id}: {why}")
        if len(s["failed_images"]) > 20:
            lines.append(f"  … and {len(s['failed_images']) - 20} more failed (see --json)")
    return "\n".join(lines)


def _size(n: float) -> str:
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"
