"""What eval refuses or warns about in one line: files that are not oczss checkpoints (pickled code named by its
global), checkpoints missing a field, and a cache made with other parameters than the training cache."""

import dataclasses
import json
import os

import pytest
import torch
from click.testing import CliRunner

from oczss.cli import main
from oczss.pipeline.stage2.recipes import resolve
from oczss.pipeline.training.loop import train


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(demo_stage1, tmp_path_factory) -> dict:
    s = demo_stage1
    out = tmp_path_factory.mktemp("refusals") / "run"
    cfg = resolve("demo", None)
    cfg = dataclasses.replace(cfg, model=dict(cfg.model), text=s["text"], iters=1, batch_size=2, workers=0)
    train(cfg, out=out, data_root=s["root"], cache=s["cache"], device="cpu", progress=False)
    return {**s, "ckpt": out / "last.pt"}


def evaluate(t, checkpoint, *extra):
    return run("eval", "--checkpoint", checkpoint, "--dataset", "demo", "--data-root", t["root"], "--text", t["text"],
               "--limit", 1, "--workers", 0, "--device", "cpu", *extra)


class Payload:
    def __reduce__(self):
        return os.system, ("echo payload ran",)


def test_files_that_are_not_oczss_checkpoints_are_named_in_one_line(trained, tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    result = evaluate(trained, text)
    assert result.exit_code == 2 and result.output.startswith(f"error: {text}: not an oczss checkpoint")
    assert "weights_only" not in result.output and len(result.output.strip().splitlines()) == 1
    evil = tmp_path / "evil.pt"
    torch.save({"model": Payload()}, evil)
    result = evaluate(trained, evil)
    line = result.output.strip().splitlines()[-1]
    assert result.exit_code == 2 and line.startswith(f"error: {evil}: not an oczss checkpoint: it holds pickled code")
    assert "(the global posix.system)" in line and line.endswith("nothing in it was run")  # named, uncut
    assert "payload ran" not in result.output and "weights_only" not in result.output


def test_a_checkpoint_without_a_field_names_it(trained, tmp_path):
    ckpt = torch.load(trained["ckpt"], weights_only=True)
    del ckpt["weights_fingerprint"]
    torch.save(ckpt, tmp_path / "edited.pt")
    result = evaluate(trained, tmp_path / "edited.pt")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"checkpoint {tmp_path / 'edited.pt'} lacks the field weights_fingerprint" in result.output


def test_a_cache_of_other_parameters_is_evaluated_with_a_warning_naming_each(trained, tmp_path):
    from oczss.pipeline.demo import PRECOMPUTE
    from oczss.pipeline.stage1.precompute import PrecomputeConfig, precompute

    other = str(tmp_path / "d16.zarr")
    precompute(PrecomputeConfig(**{**PRECOMPUTE, "split": "val", "feature_dim": 16}, cache=other,
                                data_root=trained["root"], device="cpu"), progress=False)
    result = evaluate(trained, trained["ckpt"], "--cache", other, "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    assert "other parameters than the cache this checkpoint was trained with" in result.output
    assert "feature_dim: trained with 32, this cache 16" in result.output
    assert json.loads((tmp_path / "r.json").read_text())["cache_differences"] == [
        "feature_dim: trained with 32, this cache 16"]
    same = evaluate(trained, trained["ckpt"], "--json", tmp_path / "s.json")  # the training cache: no word
    assert same.exit_code == 0 and "other parameters" not in same.output
    assert json.loads((tmp_path / "s.json").read_text())["cache_differences"] == []
