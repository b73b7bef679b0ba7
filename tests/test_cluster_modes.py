"""Issue 12's cluster modes: where the object prompts' clusters come from (whole / view / online), the compact
features behind `view`, and the smaller fidelity items (Table 10's S = 0, the clip source's first centre)."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from oczss.errors import OCZSSError
from oczss.model import OCZSSConfig, build_model
from oczss.model.clustering import fps_voronoi
from oczss.model.compaction import compact, fit_basis
from oczss.model.dino import DinoFeatures, load_dino
from oczss.pipeline.data.datasets import Dataset
from oczss.pipeline.data.transforms import View
from oczss.pipeline.stage1.config import FEATURE_DIM, PrecomputeConfig
from oczss.pipeline.stage1.tokens import MAX_ASPECT, input_size
from oczss.pipeline.stage2.checkpoint import load
from oczss.pipeline.stage2.clusters import StepClusters, open_cached
from oczss.pipeline.stage2.loader import Positions, TrainData
from oczss.pipeline.stage2.recipes import resolve
from oczss.pipeline.training.loop import train


def test_view_and_online_prompts_see_their_clusters_where_whole_ones_often_do_not(demo_stage1):
    dataset = Dataset("demo", demo_stage1["root"])
    keys = [k for _, k in zip(range(48), iter(Positions(48, 0, 0, 48)))]
    batches = {}
    for mode in ("whole", "view"):
        samples, maps, _, _ = open_cached(dataset.samples("train"), demo_stage1["cache"], "demo", "train", mode, 4)
        data = TrainData(dataset, samples, "inductive", maps, mode, 128, 16, seed=0)
        items = [data[key] for key in keys]
        batches[mode] = {k: torch.stack([i[k] for i in items]) for k in items[0] if k != "note"}
    assert torch.equal(batches["whole"]["image"], batches["view"]["image"])  # the same views
    dino = DinoFeatures(load_dino("tiny", "random", 128, dynamic=True), 0)
    empty = {}
    for mode, batch in (("whole", batches["whole"]), ("view", batches["view"]), ("online", batches["view"])):
        labels = StepClusters(mode, 4, (8, 8), dino)(batch)
        assert labels.shape == (48, 64) and int(labels.max()) < 4
        valid = batch["valid"]  # padding patches get no cluster in every mode
        assert (labels[~valid] == -1).all() and (labels[valid] >= 0).all() and not valid.all()
        present = torch.stack([torch.bincount(row[row >= 0], minlength=4) > 0 for row in labels]).sum(1)
        empty[mode] = float((4 - present).float().mean())
    assert empty["view"] < empty["whole"] and empty["online"] < empty["whole"], empty
    assert empty["whole"] > 0.1


def test_view_features_are_the_compact_tokens_sampled_bilinearly_at_the_patch_centres():
    fm = np.random.default_rng(0).normal(size=(6, 9, 5)).astype(np.float32)  # an image's own (non-square) grid
    view = View(96, 64, 20, 10, 160, 120, flip=True)
    got = view.patch_features(fm, 4, 6, 16).astype(np.float32)
    x, y = view.patch_centres(4, 6, 16)
    gy, gx = torch.meshgrid(torch.tensor(y * 2 - 1), torch.tensor(x * 2 - 1), indexing="ij")
    grid = torch.stack([gx, gy], -1)[None].float()
    ref = F.grid_sample(torch.tensor(fm).permute(2, 0, 1)[None], grid, mode="bilinear", align_corners=False,
                        padding_mode="border")[0].permute(1, 2, 0).reshape(-1, 5).numpy()
    assert np.abs(got - ref).max() < 2e-3  # fp16 storage


def test_padding_takes_no_part_in_fps_voronoi():
    torch.manual_seed(0)
    features = torch.randn(3, 20, 4)
    first = torch.tensor([0, 7, 19])
    valid = torch.ones(3, 20, dtype=torch.bool)
    assert all(torch.equal(a, b) for a, b in zip(fps_voronoi(features, [5], first, valid).values(),
                                                 fps_voronoi(features, [5], first).values()))
    valid[:, 12:] = False  # the last 8 points are padding
    far = features.clone()
    far[:, 12:] = 100.0  # far away: without the mask they would be picked as centres
    labels = fps_voronoi(far, [5], first, valid)[5]
    assert (labels[:, 12:] == -1).all()
    assert torch.equal(labels[:, :12], fps_voronoi(far[:, :12], [5], torch.tensor([0, 7, 19 % 12]))[5])


def test_the_compact_basis_is_the_pca_of_the_tokens():
    tokens = torch.randn(500, 12) @ torch.randn(12, 12)
    mean, basis = fit_basis(tokens, 4)
    centred = (tokens - tokens.mean(0)).double().numpy()
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    for j in range(4):  # the same directions up to sign, in order of variance
        assert abs(abs(float(np.dot(basis[:, j].double().numpy(), vt[j]))) - 1) < 1e-6
    again = fit_basis(tokens, 4)[1]
    assert torch.equal(basis, again) and (basis.abs().argmax(0) == basis.argmax(0)).all()  # reproducible signs
    reduced = compact(tokens, mean, basis)
    assert reduced.dtype == torch.float16 and reduced.shape == (500, 4)
    r = PrecomputeConfig(dataset="coco", cache="unused").input_size  # a COCO image at the default Stage 1 input
    w, h = input_size(640, 480, r, 16, MAX_ASPECT * r // 16)
    assert (w // 16) * (h // 16) * FEATURE_DIM * 2 <= 65 * 1024  # the former 64 KB budget, aspect kept


def test_a_cache_without_features_is_refused_for_the_view_mode(demo_root, tmp_path):
    from oczss.pipeline.stage1.precompute import precompute

    cache = str(tmp_path / "c.zarr")
    precompute(PrecomputeConfig(dataset="demo", cache=cache, data_root=str(demo_root), split="val", ks=(4,),
                                input_size=64, grid=8, weights="random", dino_model="tiny", device="cpu",
                                feature_dim=0), progress=False)
    with pytest.raises(OCZSSError, match="no compact DINO features.*--feature-dim"):
        open_cached(Dataset("demo", demo_root).samples("val"), cache, "demo", "val", "view", 4)


@pytest.mark.parametrize("mode", ["whole", "online"])
def test_training_runs_in_every_cluster_mode_and_records_it(demo_stage1, tmp_path, mode):
    cfg = dataclasses.replace(resolve("demo", None), iters=2, batch_size=2, workers=0, text=demo_stage1["text"],
                              cluster_mode=mode, dino_model="tiny", dino_weights="random")
    train(cfg, out=tmp_path / mode, data_root=demo_stage1["root"], cache=demo_stage1["cache"], device="cpu",
          progress=False)
    source = load(tmp_path / mode / "last.pt")["cluster_source"]
    assert source["mode"] == mode and (source["dino_model"] == "tiny")


def test_table_10_s0_is_table_6s_baseline():
    assert resolve("voc-t10-s0", None).model == resolve("voc-t6-baseline", None).model
    assert resolve("voc-t10-s0", None).model["mask_source"] == "none"


def test_the_clip_source_takes_its_first_centre_from_the_caller():
    model = build_model(OCZSSConfig(backbone="tiny", weights="random", num_vpt=2, num_objects=3, ora_iterations=1,
                                    dilations=(1,), mask_source="clip")).eval()
    images = torch.randn(2, 3, 64, 64)
    text = F.normalize(torch.randn(4, 2, 32), dim=-1)
    with torch.no_grad():
        a = model(images, None, text, torch.tensor([0, 5]))
        b = model(images, None, text, torch.tensor([0, 5]))
        c = model(images, None, text, torch.tensor([9, 12]))
        d = model(images, None, text)  # default: a generator seeded by config.seed
        e = model(images, None, text)
    assert torch.equal(a["decoder"], b["decoder"]) and torch.equal(d["decoder"], e["decoder"])
    assert not torch.allclose(a["decoder"], c["decoder"])
