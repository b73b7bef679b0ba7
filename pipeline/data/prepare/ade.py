"""ADE20K (ADEChallengeData2016, 150 classes) from the scene-parsing challenge download: a copy, no conversion.

Input in `--raw`: ADEChallengeData2016/ or ADEChallengeData2016.zip. Output (`--out`, the `ade` root):
images/{training,validation}/*.jpg and annotations/{training,validation}/*.png as published (values 0..150,
0 = "other objects", removed at load time by reduce_zero_label). 20,210 training and 2,000 validation images on the
real data.
"""

from __future__ import annotations

from pathlib import Path

from oczss.errors import OCZSSError
from oczss.pipeline.data.prepare.runner import Plan, Task
from oczss.pipeline.data.prepare.sources import locate, require

ADE = "ADEChallengeData2016/"


def plan(raw: Path, out: Path) -> Plan:
    tree = locate(raw, "ADE20K", "", "ADEChallengeData2016", ("ADEChallengeData2016.zip",))
    tasks = []
    for sub in ("training", "validation"):
        ids = [Path(n).stem for n in tree.files(f"{ADE}images/{sub}") if n.endswith(".jpg")]
        labels = {Path(n).stem for n in tree.files(f"{ADE}annotations/{sub}") if n.endswith(".png")}
        if not ids:
            raise OCZSSError(f"ADE20K: no images/{sub}/*.jpg in {tree.where(ADE)}")
        require(tree, [f"{ADE}images/{sub}/{i}.jpg" for i in sorted(labels)], f"ADE20K {sub} images of the annotations")
        require(tree, [f"{ADE}annotations/{sub}/{i}.png" for i in ids], f"ADE20K {sub} annotations of the images")
        for kind, ext in (("images", ".jpg"), ("annotations", ".png")):
            tasks.append(Task([(f"{ADE}{kind}/{sub}/{i}{ext}", out / kind / sub / f"{i}{ext}") for i in ids],
                              tree=tree))
    return Plan(tasks)
