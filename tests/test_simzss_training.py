"""A tiny SimZSS trains: COCO Captions fixture (official JSON layout, generated images) -> concepts from the
vocabulary -> CLIP tokens and spans -> frozen tiny-p14 tokens computed once (as Stage 1 would) -> a few steps of
the public code's optimiser whose loss falls."""

from __future__ import annotations

import numpy as np
import torch
from conftest import make_coco_captions

from oczss.model.simzss import SimZSS, SimZSSConfig, SimZSSSchedule, load_vision, optimizer, train_step
from oczss.pipeline.data.caption_tokens import TokenAligner, collate
from oczss.pipeline.data.captions import CaptionDataset
from oczss.pipeline.data.concepts import ConceptConfig, build
from oczss.pipeline.data.images import load_rgb


def test_a_few_steps_on_the_caption_fixture_lower_the_loss(tmp_path):
    root = make_coco_captions(tmp_path / "MSCOCO", train=6, val=1)
    samples = CaptionDataset(root).samples("train")
    cfg = SimZSSConfig.preset("tiny")
    concepts = ConceptConfig(source="vocabulary")
    aligner = TokenAligner()
    cleaned = [aligner.clean(s.captions[0]) for s in samples]
    found = build(concepts)(cleaned)
    batch = collate([aligner.encode(c, k, concepts.max_concepts, concepts.max_tokens) for c, k in zip(cleaned, found)])
    assert (batch.labels >= 0).sum() >= 6  # the fixture's captions name benchmark classes
    images = torch.from_numpy(np.stack([np.asarray(load_rgb(s.image).resize((cfg.image_size, cfg.image_size)))
                                        for s in samples]))
    vision = load_vision(cfg.vision, cfg.vision_weights, cfg.image_size)
    cls, patches = (t.half() for t in vision(images))  # the cached tokens, fp16
    model = SimZSS(cfg, vision.width)
    schedule = SimZSSSchedule(batch_size=6, samples=6 * 12, lr=3e-3, warmup=0.1)
    optim = optimizer(model, schedule)
    losses = [train_step(model, optim, schedule.lr_at(step), batch, cls, patches) for step in range(schedule.steps)]
    first, last = losses[0], losses[-1]
    assert last["loss"] < 0.7 * first["loss"], [round(x["loss"], 3) for x in losses]
    assert last["global"] < first["global"]
    assert model.logit_scale.exp().item() <= cfg.logit_scale_max + 1e-4
