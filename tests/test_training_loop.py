"""The training loop every method shares (pipeline/training), driven by a toy method: what a new method gets
from it (exact resume, its hooks, the checkpoint's method, refusals) without any of OC-ZSS's code."""

import pytest
import torch

from oczss.errors import OCZSSError
from oczss.pipeline.stage2.checkpoint import load
from oczss.pipeline.stage2.config import TrainConfig
from oczss.pipeline.stage2.loader import Positions
from oczss.pipeline.training import task_class
from oczss.pipeline.training.loop import train
from oczss.pipeline.training.task import Task, distributed
from oczss.pipeline.workers import guarded


class Points(torch.utils.data.Dataset):
    """Sample i: x = a fixed random [4], y = x . w_true + noise drawn from the sample's own seed."""

    def __init__(self):
        self.x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.x)

    @guarded
    def __getitem__(self, key):
        i, position = key
        noise = torch.randn(1, generator=torch.Generator().manual_seed(position))
        return {"x": self.x[i], "y": self.x[i] @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * noise}


class ToyTask(Task):
    name = "toy"
    calls: list = []

    @classmethod
    def build(cls, ctx):
        self = cls()
        self.device, self.random_weights, self.desc = ctx.device, True, "train toy"
        self.model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
        self.net = distributed(self.model, ctx)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=ctx.cfg.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: 1 - s / ctx.cfg.iters)
        self.loader = torch.utils.data.DataLoader(
            Points(), batch_size=ctx.micro, sampler=Positions(32, ctx.cfg.seed, ctx.step * ctx.accum, ctx.micro))
        self.meta, self.log_config = {"train_config": {**vars(ctx.cfg)}, "model_config": {}}, {"toy": True}
        return self

    def loss(self, batch):
        err = self.net(batch["x"]).squeeze(1) - batch["y"]
        return {"total": (err ** 2).mean(), "abs": err.abs().mean()}

    def after_step(self):
        type(self).calls.append("after")


@pytest.fixture
def toy(monkeypatch):
    from oczss.pipeline import training

    monkeypatch.setitem(training._TASKS, "toy", f"{__name__}:ToyTask")
    ToyTask.calls = []
    return TrainConfig(method="toy", dataset="anything", iters=6, batch_size=4, micro_batch=2, lr=0.05, workers=0,
                       log_every=1, save_every=1, milestone_every=100)


def run(cfg, out, **kw):
    return train(cfg, out=out, data_root=None, cache=None, device="cpu", progress=False, **kw)


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(toy, tmp_path):
    whole = run(toy, tmp_path / "whole")
    assert whole["step"] == 6 and whole["method"] == "toy" and ToyTask.calls == ["after"] * 6
    import dataclasses

    run(dataclasses.replace(toy, iters=6), tmp_path / "cut")
    first = load(tmp_path / "cut" / "checkpoints" / "iter_000003.pt")  # the half-schedule milestone
    (tmp_path / "cut2").mkdir()
    torch.save(first, tmp_path / "cut2" / "last.pt")
    run(toy, tmp_path / "cut2", resume=True)
    a, b = load(tmp_path / "whole" / "last.pt"), load(tmp_path / "cut2" / "last.pt")
    assert a["method"] == "toy" and a["step"] == b["step"] == 6
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert not torch.equal(a["model"]["0.weight"], first["model"]["0.weight"])  # it did train after the cut


def test_another_method_checkpoint_cannot_start_a_run(toy, tmp_path):
    import dataclasses

    run(dataclasses.replace(toy, iters=1), tmp_path / "a")
    other = dataclasses.replace(toy, method="oczss", dataset="demo", init_from=str(tmp_path / "a" / "last.pt"))
    with pytest.raises(OCZSSError, match="a toy checkpoint cannot start a oczss run"):
        run(other, tmp_path / "b")


def test_an_unknown_method_is_refused_in_one_line():
    with pytest.raises(OCZSSError, match="--method 'nope' cannot be trained: choose one of oczss"):
        task_class("nope")
