"""Every command refuses bad input in one line, `error: ...`, with exit status 2 and no traceback; nothing is
written; under `-v` the same line comes after the traceback of the error (click's own usage errors have none).

Adding a case is one line in CASES: (the arguments after `oczss`, a text the error line must hold). In the
arguments, {tmp} is an empty folder of the test (it must stay empty), {demo} the generated demo dataset and
{cache} a demo mask cache (K = 4).
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from oczss.cli import main

TINY = "--dino-model tiny --dino-weights random --device cpu"
CASES = [
    # the command line itself
    ("bogus", "No such command 'bogus'"),
    ("--bogus", "No such option '--bogus'"),
    ("precompute", "Missing option '--dataset'"),
    # precompute
    ("precompute --dataset demo --grid 0 --cache {tmp}/c.zarr", "--grid"),
    ("precompute --dataset demo --seed -1 --cache {tmp}/c.zarr", "--seed"),
    ("precompute --dataset demo --ks 0 --cache {tmp}/c.zarr", "every K must lie in"),
    ("precompute --dataset demo --ks 6,x --cache {tmp}/c.zarr", "comma-separated"),
    ("precompute --dataset demo --split test --cache {tmp}/c.zarr", "'--split'"),
    ("precompute --dataset demo --dino-model bogus --cache {tmp}/c.zarr", "timm has no such model"),
    ("precompute --dataset pascal --cache {tmp}/c.zarr", "did you mean voc or context59"),
    ("precompute --dataset voc --data-root {tmp}/nope --cache {tmp}/c.zarr", "JPEGImages"),
    ("precompute --dataset demo --data-root {demo} --input-size 100 " + TINY + " --cache {tmp}/c.zarr",
     "multiple of the patch size 16"),
    ("precompute --dataset demo --data-root {demo} " + TINY.replace("cpu", "cuda") + " --cache {tmp}/c.zarr",
     "CUDA is not available"),
    ("precompute --dataset demo --weights random --dino-weights x.pth --cache {tmp}/c.zarr", "contradicts"),
    # train
    ("train --config demo --workers -1 --cache {tmp}/c.zarr --out {tmp}/run", "--workers"),
    ("train --config demo --dataset voc --cache {tmp}/c.zarr --out {tmp}/run", "contradicts --config demo"),
    ("train --config nope --cache {tmp}/c.zarr --out {tmp}/run", "neither a recipe"),
    ("train --dataset voc21 --cache {tmp}/c.zarr --out {tmp}/run", "unknown dataset 'voc21'"),
    ("train --config demo --cluster-mode online --dino-model vit_base_patch16_224.dinoo --out {tmp}/run",
     "did you mean vit_base_patch16_224.dino"),
    # eval
    ("eval --dataset Pascal-VOC", "did you mean voc"),
    ("eval --dataset demo", "needs --checkpoint"),
    ("eval --checkpoint {tmp}/none.pt --dataset demo --limit 0", "--limit"),
    ("eval --method cass --dataset voc21 --checkpoint {tmp}/none.pt", "--method cass takes no --checkpoint"),
    ("eval --method cass --dataset voc21 --mode whole", "--method cass takes no --mode"),
    ("eval --checkpoint {tmp}/none.pt --dataset voc --backbone ViT-B-32", "--method oczss takes no --backbone"),
    ("eval --method cass --dataset voc21 --backbone ViT-B-61", "open_clip has no such model"),
    ("eval --method cass --dataset demo", "class-name files"),
    # predict (the flags; the class strings and outputs are tested with predict)
    ("predict {tmp}/a.jpg --classes cat", "needs --checkpoint"),
    ("predict {tmp}/a.jpg --classes cat --method cass --checkpoint {tmp}/none.pt", "--method cass takes no --checkpoint"),
    ("predict {tmp}/a.jpg --classes cat --checkpoint {tmp}/none.pt --dino-model tiny-p8", "takes no --dino-model"),
    ("predict {tmp}/a.jpg --classes cat --method cass --dino-model dino", "timm has no such model"),
    # cache
    ("cache info --cache {tmp}/none.zarr", "no mask cache at"),
    ("cache verify --cache {tmp}/none.zarr", "no mask cache at"),
    ("cache show val_0003 --dataset demo --k 6 --out {tmp}/s.png --cache {cache}", "K in 4"),
    ("cache show nope --dataset DEMO --k 4 --out {tmp}/s.png --cache {cache}", "none of the cached demo splits"),
    ("cache export {tmp}/c.h5 --cache nope://x", "unknown storage protocol 'nope'"),
    # data
    ("data prepare pascal --out {tmp}/o", "did you mean voc or context59"),
    ("data prepare coco --out {tmp}/o", "--raw is required"),
    ("data prepare coco --raw {tmp}/nope --out {tmp}/o", "is not a folder"),
    ("data prepare voc21 --raw {tmp} --out {tmp}/o", "VOC 2012: not found"),
    ("data check", "data check needs the dataset"),
    ("data check voc --dataset coco", "contradicts --dataset coco"),
    ("data check voc extra", "unexpected extra argument"),
    ("data check voc --workers 0", "'--workers'"),
    # convert
    ("convert otseg {tmp}/x.pth --dataset pascal --setting inductive --out {tmp}/o.pt --text {tmp}/t.npy",
     "did you mean voc?"),
]


def _argv(line: str, request, tmp) -> list[str]:
    values = {"tmp": str(tmp)}
    if "{demo}" in line:
        values["demo"] = str(request.getfixturevalue("demo_root"))
    if "{cache}" in line:
        values["cache"] = request.getfixturevalue("demo_stage1")["cache"]
    return [word.format(**values) for word in line.split()]


@pytest.mark.parametrize("line,message", CASES, ids=[line for line, _ in CASES])
def test_bad_input_is_one_line_without_a_traceback(line, message, request, tmp_path):
    argv = _argv(line, request, tmp_path)
    result = CliRunner().invoke(main, argv, prog_name="oczss")
    errors = [x for x in result.output.splitlines() if x.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), result.output
    verbose = CliRunner().invoke(main, ["-v", *argv], prog_name="oczss")
    assert verbose.exit_code == 2 and errors[0] in verbose.output.splitlines(), verbose.output
    usage = errors[0].startswith("error: oczss")  # click's usage errors name the command; they have no traceback
    assert ("Traceback (most recent call last)" in verbose.output) != usage, verbose.output
    assert list(tmp_path.iterdir()) == []  # refused before any work: nothing written
