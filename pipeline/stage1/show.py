"""`oczss cache show`: an image beside its cached cluster map, with cluster boundaries (as the paper's Fig. 2).

The S x S cluster map covers the whole image in normalised coordinates, so it is resized (nearest) onto the
image as it is. A legend gives each cluster's colour and share of the map; random-weight caches say so in the
title.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from oczss.cache.schema import DINO_FPS
from oczss.cache.split import DONE, FAILED
from oczss.cache.store import MaskCache
from oczss.errors import OCZSSError
from oczss.model.weights import RANDOM_NOTE
from oczss.pipeline.data.datasets import Dataset
from oczss.pipeline.data.images import ImageError, load_rgb
from oczss.pipeline.data.names import canonical, images_of
from oczss.pipeline.render import render


def show(url: str, image_id: str, dataset: str, k: int, out: str | Path, split: str | None = None,
         data_root: str | None = None) -> Path:
    """Write the picture for `image_id` to `out` (PNG) and return its path. dataset: any case; a variant's images
    are cached under its base's name."""
    dataset = images_of(canonical(dataset))
    cache = MaskCache.open(url)
    cache.expect(DINO_FPS, "`oczss cache show` (it pictures cluster maps)")
    if k not in cache.params.ks:
        raise OCZSSError(f"--k {k}: cache {url} has K in {','.join(map(str, cache.params.ks))}")
    candidates = [s for d, s in cache.splits() if d == dataset and (split is None or s == split)]
    if not candidates:
        raise OCZSSError(f"cache {url} holds no {dataset}" + (f"/{split}" if split else "") + " split")
    for s in candidates:
        sc = cache.split(dataset, s)
        if image_id in sc.index:
            break
    else:
        raise OCZSSError(f"image {image_id!r} is in none of the cached {dataset} splits ({', '.join(candidates)})")
    row = sc.row(image_id)
    status = sc.status()[row]
    if status != DONE:
        why = "its image failed to decode" if status == FAILED else "its shard is not done yet"
        raise OCZSSError(f"image {image_id!r}: no cluster labels in the cache ({why})")
    labels = np.asarray(sc.labels(k)[row])
    root = data_root or sc.meta.get("data_root")
    path = Dataset(dataset, root).image_path(s, image_id)
    try:
        image = load_rgb(path)
    except ImageError as e:
        raise OCZSSError(f"cannot show {image_id!r}: {e} (pass --data-root if the dataset moved)") from e
    p = cache.params
    title = f"{dataset}/{s} {image_id}   K={k}  S={p.grid}  DINO {p.dino_model} @ {p.input_size}"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    render(image, labels, [f"cluster {j}" for j in range(k)], title,
           notice=RANDOM_NOTE if cache.random_weights else "").save(out)
    return out
