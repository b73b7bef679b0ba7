"""COCO Captions: the image-caption pairs SimZSS trains on, beside the segmentation datasets.

Layout (what `oczss data prepare coco-captions` writes; it shares the MSCOCO root and images with `coco`):
    {train,val}2017/*.jpg
    annotations/captions_{train,val}2017.json      the official files of annotations_trainval2017.zip, unchanged:
        {"images": [{"id": int, "file_name": "000000391895.jpg", ...}, ...],
         "annotations": [{"id": int, "image_id": int, "caption": str}, ...], "info": ..., "licenses": ...}
Official figures: train 118,287 images and 591,753 captions; val 5,000 and 25,014 (about 5 per image).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from oczss.errors import OCZSSError
from oczss.pipeline.data.datasets import default_root

NAME = "coco-captions"
SPLITS = ("train", "val")
OFFICIAL = {"train": {"images": 118287, "captions": 591753}, "val": {"images": 5000, "captions": 25014}}


@dataclass(frozen=True)
class CaptionSample:
    """One image and every caption of it, in the file's order. image_id: the file name's stem (12 digits)."""

    image_id: str
    image: Path
    captions: tuple[str, ...]


def parse_captions(data: bytes | str, where: str) -> dict[str, tuple[str, ...]]:
    """A COCO captions JSON -> {file name: its captions in file order} for every listed image (an image without
    captions maps to ()). Raises OCZSSError naming `where` and the first thing that is not COCO's layout."""
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise OCZSSError(f"{where}: not JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) or not isinstance(
            doc.get("annotations"), list):
        raise OCZSSError(f"{where}: expected COCO's captions layout, an object with 'images' and 'annotations' lists")
    names: dict[int, str] = {}
    for i, image in enumerate(doc["images"]):
        if not (isinstance(image, dict) and isinstance(image.get("id"), int)
                and isinstance(image.get("file_name"), str) and image["file_name"]):
            raise OCZSSError(f"{where}: images[{i}] has no integer 'id' and 'file_name'")
        if image["id"] in names:
            raise OCZSSError(f"{where}: images[{i}]: image id {image['id']} is listed twice")
        names[image["id"]] = image["file_name"]
    captions: dict[str, list[str]] = {name: [] for name in names.values()}
    for i, note in enumerate(doc["annotations"]):
        if not (isinstance(note, dict) and isinstance(note.get("caption"), str)):
            raise OCZSSError(f"{where}: annotations[{i}] has no string 'caption'")
        if note.get("image_id") not in names:
            raise OCZSSError(f"{where}: annotations[{i}] refers to image id {note.get('image_id')!r}, which "
                             f"'images' does not list")
        captions[names[note["image_id"]]].append(note["caption"])
    return {name: tuple(c) for name, c in captions.items()}


class CaptionDataset:
    """COCO Captions under `root` (default: `$OCZSS_DATA/MSCOCO`, else `data/MSCOCO`)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_root("coco")

    def annotations(self, split: str) -> Path:
        return self.root / "annotations" / f"captions_{split}2017.json"

    def images(self, split: str) -> Path:
        return self.root / f"{split}2017"

    def check(self, split: str) -> None:
        """Fail before any work if the split's image folder or captions file is missing, naming them."""
        if split not in SPLITS:
            raise OCZSSError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        missing = [str(p) for p in (self.images(split), self.annotations(split)) if not p.exists()]
        if missing:
            raise OCZSSError(f"{NAME} {split} split: missing {', '.join(missing)}. Expected a COCO root with "
                             f"{{train,val}}2017/*.jpg and annotations/captions_{{train,val}}2017.json; `oczss data "
                             f"prepare {NAME}` makes it from the official downloads.")

    def captions(self, split: str) -> dict[str, tuple[str, ...]]:
        """{file name: captions} of a split's captions file (parse_captions)."""
        self.check(split)
        path = self.annotations(split)
        return parse_captions(path.read_bytes(), str(path))

    def samples(self, split: str) -> list[CaptionSample]:
        """Every captioned image of the split, sorted by file name (the row order of a Stage 1 token cache)."""
        folder = self.images(split)
        return [CaptionSample(Path(name).stem, folder / name, caps)
                for name, caps in sorted(self.captions(split).items()) if caps]
