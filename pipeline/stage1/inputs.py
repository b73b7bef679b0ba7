"""The images a precompute run reads: a segmentation dataset's (pipeline/data/datasets.py) or a caption
dataset's (coco-captions, pipeline/data/captions.py: the captioned images, sorted by file name, keyed by stem)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from oczss.errors import OCZSSError
from oczss.pipeline.data.captions import NAME as CAPTIONS, CaptionDataset
from oczss.pipeline.data.datasets import Dataset


@dataclass
class Images:
    """root: the dataset folder (absolute); ids: {split: image ids in row order}; paths: {split: {id: file}}."""

    root: Path
    ids: dict[str, list[str]]
    paths: dict[str, dict[str, Path]]

    def path(self, split: str, image_id: str) -> Path:
        return self.paths[split][image_id]


def dataset_images(name: str, data_root: str | None, splits: list[str]) -> Images:
    """Every image of `splits`, checked before any work: the dataset's layout, and that every listed file exists
    (a missing file is an error of the run, not a corrupt image)."""
    root = Path(data_root).resolve() if data_root else None
    if name == CAPTIONS:
        ds = CaptionDataset(root)
        for split in splits:
            ds.check(split)
        samples = {s: ds.samples(s) for s in splits}
        images = Images(ds.root.resolve(), {s: [x.image_id for x in samples[s]] for s in splits},
                        {s: {x.image_id: x.image for x in samples[s]} for s in splits})
    else:
        ds = Dataset(name, root)
        ds.check(splits[0], labels=False)
        ids = {s: ds.image_ids(s) for s in splits}
        images = Images(ds.root.resolve(), ids, {s: {i: ds.image_path(s, i) for i in ids[s]} for s in splits})
    missing = [str(p) for s in splits for p in images.paths[s].values() if not p.exists()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise OCZSSError(f"{len(missing)} image file(s) listed by the {name} splits do not exist: {shown}")
    return images
