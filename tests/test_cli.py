"""The command line as a newcomer meets it: parsing loads no deep-learning library, every flag says what it does,
the flags of one method are listed apart, and old spellings still work with a one-line warning."""

import subprocess
import sys

import click
from click.testing import CliRunner

from oczss.cli import main


def test_parsing_the_command_line_imports_no_torch():
    code = ("import sys, oczss.cli; from click.testing import CliRunner; "
            "r = CliRunner().invoke(oczss.cli.main, ['--help']); assert r.exit_code == 0, r.output; "
            "r = CliRunner().invoke(oczss.cli.main, ['precompute', '--help']); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'open_clip', 'timm', 'zarr', 'dask') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _commands(group: click.Group, path: str = "oczss"):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, f"{path} {name}")
        else:
            yield f"{path} {name}", command


def test_every_flag_has_help():
    missing = [f"{path} {p.opts[0]}" for path, command in _commands(main) for p in command.params
               if isinstance(p, click.Option) and not (p.help or "").strip()]
    assert missing == []


def test_flags_of_one_method_are_listed_under_it():
    text = CliRunner().invoke(main, ["eval", "--help"]).output
    general, rest = text.split("Trained methods only (--method oczss or ")
    trained, rest = rest.split("OC-ZSS only (--method oczss):")
    oczss, cass = rest.split("CASS only (--method cass):")
    assert "--dataset" in general and "--device" in general
    assert "--checkpoint" not in general and "--backbone" not in general and "--cluster-mode" not in general
    assert "--checkpoint" in trained and "--cluster-mode" not in trained
    assert "--cluster-mode" in oczss and "--backbone" not in oczss
    assert "--backbone" in cass and "--dino-model" in cass and "--checkpoint" not in cass


def test_precompute_weights_still_works_with_a_one_line_warning(demo_root, tmp_path):
    flags = ["--dataset", "demo", "--data-root", str(demo_root), "--split", "val", "--dino-model", "tiny",
             "--input-size", "32", "--grid", "4", "--ks", "2", "--feature-dim", "0", "--shard-size", "16", "--device",
             "cpu", "--cache", str(tmp_path / "c.zarr")]
    result = CliRunner().invoke(main, ["precompute", *flags, "--weights", "random"])
    assert result.exit_code == 0, result.output
    assert [x for x in result.output.splitlines() if "deprecated" in x] == [
        "warning: precompute --weights is deprecated: it is now --dino-weights"]
    again = CliRunner().invoke(main, ["precompute", *flags, "--dino-weights", "random"])  # the same run: all done
    assert again.exit_code == 0 and "deprecated" not in again.output and "(1 already done)" in again.output
