"""Named CASS configurations, listed by `oczss configs`: one per cell of the paper's Table 1 row (the authors'
constants for each benchmark) and one per row of Table 3's ablation (Exp. #1-#8, on the benchmark being
evaluated), plus the paper's reading of every code-vs-paper difference.

    cass                  the authors' constants of the benchmark being evaluated (what `--method cass` uses)
    cass-<benchmark>      Table 1: that benchmark's constants (voc21, context60, coco-object, voc20, context59,
                          coco, ade, cityscapes)
    cass-t3-exp<n>        Table 3, Exp. #n (components switched off as the row says)
    cass-paper            every switch at the paper's reading instead of the code's (README lists them)

On a dataset without a row in BENCHMARKS (`predict` with the user's own classes), `cass`, `cass-paper` and the
Table 3 rows take PREDICT_BENCHMARK's constants; `cass-<benchmark>` takes that benchmark's.
"""

from __future__ import annotations

from oczss.errors import OCZSSError
from oczss.model.cass import ABLATIONS, BENCHMARKS, CASSConfig, ablation, for_benchmark, paper_reading

TABLE1 = {"voc21": 65.8, "context60": 36.7, "coco-object": 37.8, "voc20": 87.8, "context59": 40.2, "coco": 26.7,
          "ade": 20.4, "cityscapes": 39.4}  # the paper's Table 1 mIoU, CLIP ViT-B/16


# Constants for a custom class list: Context59's. The user's classes are a short list that covers the picture, with
# no background class, so the rows with a background threshold (voc21, context60, coco-object: it turns pixels
# into class 0, which would be the user's first class) are out; among the rest, voc20 is object-centric with a
# strong prior (λ 0.4, no DE), coco (171 classes, Ward cut 0.02) and ade (150) are tuned for large vocabularies,
# cityscapes for street scenes at short side 560. Context59 is whole everyday scenes of things and stuff with a
# moderate vocabulary, the middle constants (λ 0.25, α 0.04, Ward 0.09, DE on), and the config's defaults.
PREDICT_BENCHMARK = "context59"


def recipes() -> dict[str, str]:
    """name -> what it reproduces."""
    out = {"cass": "CASS with the authors' constants of the --dataset being evaluated"}
    out.update({f"cass-{b}": f"Table 1, CASS on {b} (paper: {TABLE1[b]} mIoU)" for b in BENCHMARKS})
    out.update({f"cass-t3-exp{n}": f"Table 3 Exp. #{n}: " + ", ".join(
        name for name, on in zip(("VFM", "GM", "LR", "DE", "OPS", "OTA"), row) if on) if any(row) else
        "Table 3 Exp. #1: vanilla (CLIP's own key graph, no VFM, no presence prior)" for n, row in ABLATIONS.items()})
    out["cass-paper"] = "CASS with every code-vs-paper difference at the paper's reading"
    return out


def resolve(name: str | None, benchmark: str) -> CASSConfig:
    """The CASSConfig of recipe `name` (None: `cass`) for evaluating or predicting on `benchmark`."""
    name = name or "cass"
    base = benchmark if benchmark in BENCHMARKS else PREDICT_BENCHMARK
    if name == "cass":
        return for_benchmark(base)
    if name == "cass-paper":
        return paper_reading(for_benchmark(base))
    if name.startswith("cass-t3-exp") and name[len("cass-t3-exp"):].isdigit():
        return ablation(int(name[len("cass-t3-exp"):]), base)
    if name.startswith("cass-") and name[5:] in BENCHMARKS:
        if benchmark in BENCHMARKS and name[5:] != benchmark:
            raise OCZSSError(f"--config {name} is the {name[5:]} configuration, not {benchmark}'s")
        return for_benchmark(name[5:])
    raise OCZSSError(f"--config {name}: not a CASS recipe; choose one of {', '.join(recipes())}")
