"""The `oczss` command line: parse, build a config, call the library. Nothing else lives here.

Parsing imports no torch, open_clip or zarr (each command imports what it runs), so `oczss --help` answers at
once. Every refusal is one line, `error: ...`, with exit status 2: bad flags (click's usage errors, reworded on
one line) and bad input (OCZSSError); `-v` adds the traceback of an OCZSSError.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import traceback
from pathlib import Path

import click
from click.core import ParameterSource

from oczss import __version__
from oczss.errors import OCZSSError
from oczss.model.names import CLIP_B16, DINO_B8, DINO_B16
from oczss.pipeline.data.names import DATASETS, ZERO_SHOT, canonical
from oczss.pipeline.stage1.config import CAPTIONS, DEFAULT_GRID, DEFAULT_INPUT_SIZE, PrecomputeConfig
from oczss.pipeline.stage1.sources import SOURCES
from oczss.pipeline.training import names as trained_methods

log = logging.getLogger("oczss.cli")
COUNT = click.IntRange(min=1)
NATURAL = click.IntRange(min=0)
METHODS = click.Choice(["oczss", "cass", "simzss", "sm"])
CLUSTER_MODES = click.Choice(["view", "whole", "online"])
METHOD_TITLES = {"oczss": "OC-ZSS only (--method oczss)", "cass": "CASS only (--method cass)",
                 "simzss": "SimZSS only (--method simzss)", "sm": "Split Matching only (--method sm)"}
DATA_NAMES = DATASETS + (CAPTIONS,)  # what `data prepare|check` and `precompute` take (captions: dinov2-tokens only)
TRAINED = trained_methods()
CHECKPOINT_METHODS = ("oczss", "simzss", "sm")  # the trained methods: eval / predict take their --checkpoint
METHOD_TITLES["/".join(CHECKPOINT_METHODS)] = f"Trained methods only (--method {' or '.join(CHECKPOINT_METHODS)})"


class _Names(click.Choice):
    """Dataset names in any case; an unknown one is refused naming the closest (`pascal` -> voc, context59)."""

    def __init__(self, names: tuple[str, ...]):
        super().__init__(names, case_sensitive=False)

    def convert(self, value, param, ctx):
        try:
            return canonical(value, tuple(self.choices))
        except OCZSSError as e:
            self.fail(str(e), param, ctx)


class _OneLine(click.ClickException):
    """A click usage error (bad or missing flag) as one line: `error: COMMAND: what is wrong (see COMMAND --help)`."""

    exit_code = 2

    def __init__(self, error: click.UsageError):
        path = error.ctx.command_path if error.ctx else "oczss"
        text = " ".join(error.format_message().split()).rstrip(".")
        super().__init__(f"{path}: {text} (see `{path} --help`)")

    def show(self, file=None) -> None:
        click.echo(f"error: {self.message}", err=True)


class _Group(click.Group):
    """Turns OCZSSError, an OSError that reached the top (a read-only folder, a full disk) and click's usage errors
    into one line on stderr and exit status 2, without a traceback (the error's traceback comes first under -v)."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            raise _OneLine(e) from e

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            raise _OneLine(e) from e
        except (OCZSSError, OSError) as e:
            from oczss.errors import os_error

            if ctx.params.get("verbose"):
                traceback.print_exc()
            click.echo(f"error: {e if isinstance(e, OCZSSError) else os_error(e)}", err=True)
            sys.unraisablehook = lambda *_: None  # no "Exception ignored" noise of abandoned I/O after the line
            sys.exit(2)


class _MethodOption(click.Option):
    """An option of some methods (or mask sources) only (`method`: a name or a tuple of names): listed under its own
    heading in --help, refused with any other."""

    def __init__(self, *args, method: str | tuple[str, ...], **kwargs):
        super().__init__(*args, **kwargs)
        self.methods = (method,) if isinstance(method, str) else tuple(method)
        self.method = "/".join(self.methods)


def _refuse_foreign(ctx, method: str | None, selector: str = "method") -> None:
    """Refuse, in one line, the options given on the command line that `--selector method` does not take."""
    if method is None:
        return
    given = [p for p in ctx.command.params if isinstance(p, _MethodOption) and method not in p.methods
             and ctx.get_parameter_source(p.name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)]
    if given:
        owners = " or ".join(dict.fromkeys(f"--{selector} {m}" for p in given for m in p.methods))
        raise OCZSSError(f"--{selector} {method} takes no {', '.join(p.opts[0] for p in given)} (only {owners} "
                         f"{'does' if ' or ' not in owners else 'do'})")


class _MethodCommand(click.Command):
    """A command with --method: options of some methods only are listed apart and refused with the others."""

    selector, titles = "method", METHOD_TITLES

    def format_options(self, ctx, formatter):
        groups = dict.fromkeys([None, *(getattr(p, "method", None) for p in self.get_params(ctx))])
        for method in groups:
            rows = [p.get_help_record(ctx) for p in self.get_params(ctx)
                    if isinstance(p, click.Option) and getattr(p, "method", None) == method]
            rows = [r for r in rows if r is not None]
            if rows:
                title = self.titles.get(method, f"--{self.selector} {method.replace('/', ' or ')} only") if method \
                    else "Options"
                with formatter.section(title):
                    formatter.write_dl(rows)

    def invoke(self, ctx):
        _refuse_foreign(ctx, ctx.params.get(self.selector), self.selector)
        return super().invoke(ctx)


class _SourceCommand(_MethodCommand):
    """`precompute`: options of some mask sources only (--masks) are listed apart and refused with another source."""

    selector, titles = "masks", {}


def _oczss(*args, **kwargs):
    return click.option(*args, cls=_MethodOption, method="oczss", **kwargs)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="oczss")
@click.option("-v", "--verbose", count=True, help="More detail on stderr (-v: debug, and the traceback of an error).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr; no progress bars.")
def main(verbose, quiet):
    """OC-ZSS: zero-shot semantic segmentation with object-centric refinement."""
    from oczss.pipeline.console import setup_logging

    setup_logging(-1 if quiet else verbose)


def _ints(ctx, param, value) -> tuple[int, ...]:
    if isinstance(value, tuple):
        return value
    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers") from None
    if not out:
        raise click.BadParameter("give at least one value")
    return out


def _model_name(kind: str):
    """A click callback refusing a backbone name its library does not know, before any work."""

    def check(ctx, param, value):
        from oczss.model.names import check_name

        return value if value is None else check_name(kind, value, param.opts[0])

    return check


def _default_cache(source: str = "dino-fps") -> str:
    from oczss.cache.store import default_cache_url

    return default_cache_url(source)


def _cache_option(f):
    return click.option("--cache", "cache_url", default=_default_cache, show_default="$OCZSS_CACHE or oczss-cache.zarr",
                        help="Cache location: a local path or any fsspec URL (s3://, gs://, memory://).")(f)


def _device_option(f):
    return click.option("--device", default="auto", show_default=True,
                        help="auto (the first GPU if there is one), cpu or cuda[:N].")(f)


def _cass_models(f):
    """CASS's two backbones: the paper's by default; `tiny` / `tiny-p8` (random weights) for tests and the demo."""
    f = click.option("--dino-model", default=DINO_B8, show_default=True, cls=_MethodOption, method="cass",
                     callback=_model_name("dino"), help="CASS's DINO (a timm name; tiny-p8 for tests).")(f)
    return click.option("--backbone", default=CLIP_B16, show_default=True, cls=_MethodOption, method="cass",
                        callback=_model_name("clip"), help="CASS's CLIP (an open_clip name; tiny for tests).")(f)


_PC = {f.name: f.default for f in dataclasses.fields(PrecomputeConfig)}


def _source(method, *args, **kwargs):
    return click.option(*args, cls=_MethodOption, method=method, **kwargs)


def _per_source(defaults: dict) -> str:
    return ", ".join(f"{v} ({k})" for k, v in defaults.items())


@main.command(cls=_SourceCommand)
@click.option("--masks", default=_PC["masks"], show_default=True, type=click.Choice(SOURCES),
              help="What to compute: dino-fps (OC-ZSS's DINO clusters), clip-kmeans (Split Matching's CLIP K-Means "
                   "candidates) or dinov2-tokens (SimZSS's frozen DINOv2 tokens).")
@click.option("--dataset", required=True, type=_Names(DATA_NAMES),
              help="Dataset whose images to cache (a variant such as voc21 caches its base's, voc; coco-captions: "
                   "dinov2-tokens only).")
@click.option("--data-root", type=click.Path(file_okay=False),
              help="Dataset folder [default: data/<VOC2012|VOC2010|MSCOCO|demo|...>].")
@click.option("--split", default=_PC["split"], show_default=True, type=click.Choice(["train", "val", "all"]),
              help="Split(s) whose images to cache.")
@click.option("--cache", "cache_url", show_default="$OCZSS_CACHE or oczss-cache.zarr, with -clip-kmeans or "
              "-dinov2-tokens before .zarr for those sources",
              help="Cache location: a local path or any fsspec URL (s3://, gs://, memory://).")
@click.option("--input-size", type=COUNT, show_default=_per_source(DEFAULT_INPUT_SIZE),
              help="R: dino-fps: DINO sees the image with its short side at R, the long side rounded to the patch; "
                   "the other sources: the whole image resized to R x R.")
@_source(("dino-fps", "clip-kmeans"), "--grid", type=NATURAL, show_default=_per_source(DEFAULT_GRID),
         help="S: features are resized to S x S before clustering (clip-kmeans: 0 keeps CLIP's patch grid).")
@click.option("--batch-size", default=_PC["batch_size"], type=COUNT, show_default=True, help="Images per model batch.")
@click.option("--device", default=_PC["device"], show_default=True,
              help="auto, cpu or cuda[:N]; with --scheduler, auto is resolved on each worker.")
@click.option("--shard-size", default=_PC["shard_size"], type=COUNT, show_default=True,
              help="Images per shard object.")
@click.option("--decode-threads", type=COUNT, default=_PC["decode_threads"], show_default="CPU cores, at most 16",
              help="Image decoding threads per process.")
@click.option("--scheduler", default=None, help="Address of a dask.distributed scheduler [default: dask's local one].")
@click.option("--retry-failed", is_flag=True, help="Recompute the shards whose images failed to decode before.")
@click.option("--force-unlock", is_flag=True, help="Take the cache's writer lock even if another run holds it "
              "(only when that run is dead).")
@_source("dino-fps", "--ks", default=",".join(map(str, _PC["ks"])), show_default=True, callback=_ints,
         help="Cluster counts K (one FPS run serves all).")
@_source("dino-fps", "--dino-weights", default=_PC["weights"], show_default=True,
         help="DINO's weights: pretrained (timm hub cache), random (tests/demo) or a checkpoint PATH.")
@_source("dino-fps", "--weights", "old_weights", hidden=True, help="Deprecated spelling of --dino-weights.")
@_source("dino-fps", "--dino-model", default=_PC["dino_model"], show_default=True,
         help="timm model name of the DINO ViT (e.g. for the Table 7 variants).")
@_source("dino-fps", "--seed", default=_PC["seed"], type=NATURAL, show_default=True,
         help="Seed of the first FPS centre (with the image id).")
@_source("dino-fps", "--feature-dim", default=_PC["feature_dim"], type=click.IntRange(0, 256), show_default=True,
         help="D of the compact DINO features stored for the `view` cluster mode (0: store none).")
@_source("clip-kmeans", "--clip-model", default=_PC["clip_model"], show_default=True,
         help="The frozen CLIP (an open_clip name; tiny for tests).")
@_source("clip-kmeans", "--clip-weights", default="pretrained", show_default=True,
         help="CLIP's weights: pretrained (open_clip 'openai'), random (tests/demo) or a checkpoint PATH.")
@_source("clip-kmeans", "--windows", default=",".join(map(str, _PC["windows"])), show_default=True, callback=_ints,
         help="K-Means window sizes in grid cells (one seed per window; one K-Means per size).")
@_source("clip-kmeans", "--kmeans-iters", default=_PC["kmeans_iters"], type=NATURAL, show_default=True,
         help="Lloyd iterations of each K-Means.")
@_source("clip-kmeans", "--threshold", default=_PC["threshold"], type=click.FloatRange(-1, 1), show_default=True,
         help="Cosine similarity above which clusters of different scales fuse.")
@_source("clip-kmeans", "--max-candidates", default=_PC["max_candidates"], type=click.IntRange(1, 254),
         show_default=True, help="K_u: pseudo masks kept per image, the largest.")
@_source("clip-kmeans", "--region", default=_PC["region"], show_default=True, type=click.Choice(["mask", "box"]),
         help="What CLIP embeds per mask: the masked whole image, or the masked image cut to the mask's box.")
@_source("clip-kmeans", "--crop-size", default=_PC["crop_size"], type=COUNT, show_default=True,
         help="Side each region is resized to for CLIP.")
@_source("dinov2-tokens", "--vision-model", default=_PC["vision_model"], show_default=True,
         help="The frozen DINOv2 (a timm name; tiny-p14 for tests).")
@_source("dinov2-tokens", "--vision-weights", default="pretrained", show_default=True,
         help="DINOv2's weights: pretrained (timm hub cache), random (tests/demo) or a checkpoint PATH.")
def precompute(masks, cache_url, dino_weights, old_weights, clip_weights, vision_weights, **flags):
    """Stage 1: compute a mask source over every image into its cache (resumable): DINO clusters (default), CLIP
    K-Means candidates or DINOv2 tokens. Flags of another source are refused; model names are checked (by
    PrecomputeConfig) before any work."""
    from oczss.cache.store import default_cache_url
    from oczss.model.weights import RANDOM_NOTE
    from oczss.pipeline.console import rate_text
    from oczss.pipeline.stage1.precompute import precompute as run

    if old_weights is not None:
        if dino_weights != _PC["weights"] and dino_weights != old_weights:
            raise OCZSSError(f"--weights {old_weights} contradicts --dino-weights {dino_weights}; give --dino-weights "
                             f"alone")
        log.warning("precompute --weights is deprecated: it is now --dino-weights")
        dino_weights = old_weights
    weights = {"dino-fps": dino_weights, "clip-kmeans": clip_weights, "dinov2-tokens": vision_weights}[masks]
    cache_url = cache_url or default_cache_url(masks)
    cfg = PrecomputeConfig(masks=masks, cache=cache_url, weights=weights, **flags)
    s = run(cfg)
    nfail = sum(len(v) for v in s.failed.values())
    click.echo(f"{cache_url}: {s.images} images in {s.shards_run} shards ({s.shards_skipped} already done) "
               f"in {s.seconds:.1f} s, {rate_text(s.images_per_second, 'img')}; {nfail} failed"
               + (" (listed above)" if nfail else "") + (f"; {RANDOM_NOTE}" if s.random_weights else ""))


@main.group()
def cache():
    """Inspect, check, picture and export a mask cache."""


@cache.command()
@_cache_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(cache_url, as_json):
    """Parameters, splits, completeness, size on disk and cluster-size statistics."""
    import json

    from oczss.pipeline.stage1.inspect import format_info, info as run

    data = run(cache_url)
    click.echo(json.dumps(data, indent=2) if as_json else format_info(data))


@cache.command()
@_cache_option
@click.option("--partial", is_flag=True, help="Accept unfinished shards (a precompute still to be completed).")
def verify(cache_url, partial):
    """Read every shard; check shapes, dtypes, label values, ids and completion records."""
    from oczss.pipeline.stage1.inspect import check

    problems = check(cache_url, partial=partial)
    for line in problems:
        click.echo(line)
    if problems:
        click.echo(f"{cache_url}: {len(problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo(f"{cache_url}: ok")


@cache.command()
@click.argument("image_id")
@click.option("--dataset", required=True, type=_Names(DATASETS), help="Dataset of the image (a variant: its base's).")
@click.option("--k", default=6, type=COUNT, show_default=True, help="Which cluster count K to picture.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--split", type=click.Choice(["train", "val"]), help="Split holding the image [default: search].")
@click.option("--data-root", type=click.Path(file_okay=False), help="Dataset folder, if it moved since precompute.")
@_cache_option
def show(image_id, dataset, k, out, split, data_root, cache_url):
    """Picture an image beside its cluster map with cluster boundaries."""
    from oczss.pipeline.stage1.show import show as run

    click.echo(run(cache_url, image_id, dataset, k, out, split=split, data_root=data_root))


@cache.command()
@click.argument("out")
@click.option("--format", "fmt", default="hdf5", show_default=True, type=click.Choice(["hdf5"]),
              help="File format (HDF5: one group per dataset and split, dimension labels on every array).")
@_cache_option
def export(out, fmt, cache_url):
    """Write the cache's arrays and metadata to one HDF5 file (a path or an fsspec URL)."""
    from oczss.pipeline.stage1.inspect import export as run

    click.echo(run(cache_url, out))


@main.command()
def configs():
    """List the named recipes: training, per method (`train --config NAME`), and CASS (`eval|predict --method cass
    --config NAME`)."""
    from oczss.pipeline.cass.recipes import recipes
    from oczss.pipeline.stage2.recipes import RECIPES

    cass = recipes()
    width = max(map(len, [*RECIPES, *cass]))
    for method in dict.fromkeys(cfg.method for _, cfg in RECIPES.values()):
        title = METHOD_TITLES.get(method, method).split(" only")[0]
        click.echo(f"{title} training recipes (oczss train --config NAME):")
        for name, (what, cfg) in RECIPES.items():
            if cfg.method == method:
                click.echo(f"  {name:<{width}}  {cfg.iters:>6} it  {what}")
    click.echo("CASS recipes, training-free (oczss eval|predict --method cass --config NAME):")
    for name, what in cass.items():
        click.echo(f"  {name:<{width}}  {'':>6}     {what}")


@main.command(cls=_MethodCommand)
@click.option("--method", type=click.Choice(TRAINED), help="The method trained [default: the recipe's; oczss].")
@click.option("--dataset", type=_Names(ZERO_SHOT + (CAPTIONS,)),
              help="Benchmark to train on (SimZSS: coco-captions) [default: the recipe's].")
@click.option("--setting", type=click.Choice(["inductive", "transductive"]), help="[default: the recipe's]")
@click.option("--data-root", type=click.Path(file_okay=False), help="Dataset folder [default: data/<folder>].")
@_cache_option
@click.option("--out", type=click.Path(file_okay=False),
              help="Run folder [default: runs/<dataset>-<setting> for OC-ZSS, runs/<dataset>-<method> otherwise].")
@click.option("--config", "config", help="A recipe name (see `oczss configs`) or a TrainConfig JSON file.")
@click.option("--iters", type=COUNT, help="Training iterations [default: the recipe's, e.g. 20000 for VOC].")
@click.option("--batch-size", type=COUNT, help="Global batch [default: 16].")
@click.option("--micro-batch", type=COUNT, help="Per-process batch per forward; the rest is gradient accumulation.")
@click.option("--workers", type=NATURAL, help="Data loader processes [default: 8, at most the CPU count].")
@_device_option
@click.option("--weights", help="CLIP weights (SimZSS: its frozen vision tower's): pretrained, random (tests/demo) "
              "or a PATH.")
@click.option("--init-from", type=click.Path(dir_okay=False), help="Start from this checkpoint's trainable weights.")
@click.option("--text", type=click.Path(dir_okay=False), cls=_MethodOption, method=("oczss", "sm"),
              help="Class x template text embeddings (.npy).")
@click.option("--seed", type=NATURAL, help="Data order and augmentation seed [default: 0].")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt.")
@click.option("--skip-damaged", is_flag=True, help="Skip the images of damaged cache shards instead of stopping.")
@_oczss("--cluster-mode", type=CLUSTER_MODES, help="Object prompts' clusters: view (cached compact DINO tokens "
        "clustered per view), whole (cached whole-image clusters) or online (DINO per view) [default: view].")
@_oczss("--dino-model", callback=_model_name("dino"), help=f"The online mode's DINO (timm name) [default: {DINO_B16}].")
@_oczss("--dino-weights", help="The online mode's DINO weights: pretrained, random or a PATH.")
@click.option("--candidates", type=click.Choice(["cache", "online"]), cls=_MethodOption, method="sm",
              help="Unseen candidates: cache (Stage 1's clip-kmeans) or online (the frozen CLIP per view) "
                   "[default: the recipe's].")
def train(method, dataset, setting, data_root, cache_url, out, config, iters, batch_size, micro_batch, workers, device,
          weights, init_from, text, seed, resume, skip_damaged, cluster_mode, dino_model, dino_weights, candidates):
    """Stage 2: train a method (OC-ZSS by default, or an ablation) from its cache (see `oczss configs`)."""
    from oczss.model.weights import RANDOM_NOTE
    from oczss.pipeline.stage2.recipes import resolve
    from oczss.pipeline.training.loop import train as run

    cfg = resolve(config, dataset, method)
    if dataset and config and dataset != cfg.dataset:
        raise OCZSSError(f"--dataset {dataset} contradicts --config {config} (a {cfg.dataset} config)")
    _refuse_foreign(click.get_current_context(), cfg.method)
    overrides = dict(setting=setting, iters=iters, batch_size=batch_size, micro_batch=micro_batch, workers=workers,
                     init_from=init_from, text=text, seed=seed, cluster_mode=cluster_mode, dino_model=dino_model,
                     dino_weights=dino_weights, candidates=candidates)
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None},
                              model={**cfg.model, **({"weights": weights} if weights else {})})
    if cfg.method == "sm" and click.get_current_context().get_parameter_source("cache_url") != \
            ParameterSource.COMMANDLINE:
        cache_url = _default_cache("clip-kmeans")  # SM's candidates: the clip-kmeans source's own default cache
    out = out or (f"runs/{cfg.dataset}-{cfg.setting}" if cfg.method == "oczss" else f"runs/{cfg.dataset}-{cfg.method}")
    summary = run(cfg, out=out, data_root=data_root, cache=cache_url, device=device, resume=resume,
                  skip_damaged=skip_damaged)
    if summary["rank"]:
        return  # under torchrun, rank 0 alone reports
    last = summary["last"]
    click.echo(f"{out}: trained to iteration {summary['step']}, loss {last.get('loss', float('nan')):.4f}; "
               f"checkpoints in {out}/checkpoints, metrics in {out}/metrics.jsonl"
               + (f"; {RANDOM_NOTE}" if summary["random_weights"] else ""))


@main.command("eval", cls=_MethodCommand)
@click.option("--method", default="oczss", show_default=True, type=METHODS,
              help="oczss, simzss, sm: a trained checkpoint; cass: training-free, no checkpoint.")
@click.option("--dataset", required=True, type=_Names(DATASETS), help="Benchmark to evaluate on.")
@click.option("--split", default="val", show_default=True, type=click.Choice(["train", "val"]),
              help="Split to evaluate (the whole split).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write the report as JSON here.")
@click.option("--data-root", type=click.Path(file_okay=False), help="Dataset folder [default: data/<folder>].")
@_device_option
@click.option("--weights", help="CLIP weights (SimZSS: its vision tower's): pretrained, random (tests/demo) or a PATH "
              "[trained methods: as in training].")
@click.option("--dino-weights", default="pretrained", show_default=True,
              help="DINO weights: pretrained, random or a PATH (CASS's DINO; OC-ZSS: the online cluster mode's).")
@click.option("--workers", default=2, type=NATURAL, show_default=True, help="Image loading processes.")
@click.option("--limit", type=COUNT, help="Evaluate the first N images only.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), cls=_MethodOption, method=CHECKPOINT_METHODS,
              help="A checkpoint written by train (required); its method is the one evaluated.")
@_oczss("--mode", default="slide", show_default=True, type=click.Choice(["slide", "whole"]),
        help="Inference over sliding windows or on the whole image.")
@_oczss("--cache", "cache_url", default=None, show_default="the cache the checkpoint was trained with",
        help="Cache with the eval images' clusters: a local path or any fsspec URL.")
@_oczss("--text", type=click.Path(dir_okay=False), help="Class x template text embeddings (.npy).")
@_oczss("--allow-subset", is_flag=True, help="Evaluate even if some images have no cached clusters.")
@_oczss("--cluster-mode", type=CLUSTER_MODES, help="Override the checkpoint's cluster mode.")
@click.option("--config", "recipe", cls=_MethodOption, method="cass",
              help="CASS recipe (see `oczss configs`) [default: the benchmark's constants].")
@_cass_models
def evaluate(method, dataset, split, json_out, data_root, device, weights, dino_weights, workers, limit, checkpoint,
             mode, cache_url, text, allow_subset, cluster_mode, recipe, backbone, dino_model):
    """Per-class IoU, mIoU (S / U / harmonic for OC-ZSS) and pixel accuracy over a whole split."""
    from oczss.pipeline.evaluation import write_json
    from oczss.pipeline.outputs import check_writable

    if json_out:
        check_writable(Path(json_out).parent, "--json")
    if method == "cass":
        from oczss.pipeline.cass.evaluate import evaluate as run, format_report

        report = run(dataset, split=split, recipe=recipe, data_root=data_root, device=device,
                     weights=weights or "pretrained", dino_weights=dino_weights, backbone=backbone,
                     dino_model=dino_model, workers=workers, limit=limit)
    elif _checkpoint_method(checkpoint, method) != "oczss":
        from oczss.pipeline.segmenter import load
        from oczss.pipeline.segmenter.evaluate import format_method_report as format_report

        report = load(checkpoint, device=device, **({"weights": weights} if weights else {})).evaluate(
            dataset, split=split, data_root=data_root, workers=workers, limit=limit)
    else:
        from oczss.pipeline.stage2.evaluate import evaluate as run, format_report

        report = run(checkpoint, dataset, split=split, mode=mode, data_root=data_root, cache=cache_url, device=device,
                     weights=weights, text=text, workers=workers, limit=limit, allow_subset=allow_subset,
                     cluster_mode=cluster_mode, dino_weights=None if dino_weights == "pretrained" else dino_weights)
    click.echo(format_report(report))
    if json_out:
        write_json(report, json_out)
        click.echo(f"report: {json_out}")


def _checkpoint_method(checkpoint: str | None, method: str) -> str:
    """The method --checkpoint holds; --method, when given, must agree, and options of other methods are refused."""
    from oczss.pipeline.segmenter.evaluate import checkpoint_method

    if not checkpoint:
        raise OCZSSError(f"--method {method} needs --checkpoint (or use --method cass, which needs none)")
    ctx = click.get_current_context()
    kind = checkpoint_method(checkpoint)
    if kind != method and ctx.get_parameter_source("method") == ParameterSource.COMMANDLINE:
        raise OCZSSError(f"--checkpoint {checkpoint} holds a {kind} model, not {method}: pass --method {kind} or "
                         f"leave --method out")
    _refuse_foreign(ctx, kind)
    return kind


def _save_kinds(ctx, param, value) -> tuple[str, ...]:
    from oczss.pipeline.segmenter.outputs import parse_save

    try:
        return parse_save(value, "--save")
    except OCZSSError as e:
        raise click.BadParameter(str(e).split(": ", 1)[1]) from None


@main.command(cls=_MethodCommand)
@click.argument("inputs", nargs=-1, required=True)
@click.option("--classes", required=True, help='Comma-separated class names, | between synonyms of one class, e.g. '
              '"cat,sofa|couch,window".')
@click.option("--method", default="oczss", show_default=True, type=METHODS,
              help="oczss, simzss, sm: a trained checkpoint; cass: training-free, no checkpoint.")
@click.option("--out", default="predictions", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the pictures and predictions.jsonl.")
@click.option("--save", default="overlay,labels", show_default=True, callback=_save_kinds,
              help="What to write per image: overlay, labels (PNG), probs (float16 .npy); predictions.jsonl always.")
@click.option("--batch-size", default=4, type=COUNT, show_default=True, help="Images per model call.")
@click.option("--workers", default=2, type=NATURAL, show_default=True,
              help="Threads decoding images ahead of the model (and writing outputs behind it).")
@_device_option
@click.option("--weights", help="CLIP weights (SimZSS: its vision tower's): pretrained, random (tests/demo) or a PATH "
              "[trained methods: as in training].")
@click.option("--dino-weights", help="DINO weights [oczss: as the training cache; cass: pretrained].")
@click.option("--overwrite", is_flag=True, help="Redo images already done in --out (default: skip them).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), cls=_MethodOption, method=CHECKPOINT_METHODS,
              help="A checkpoint written by train (required); its method is the one that segments.")
@_oczss("--text", type=click.Path(dir_okay=False), help="Text embeddings (.npy) for the classes.")
@_oczss("--mode", default="slide", show_default=True, type=click.Choice(["slide", "whole"]),
        help="Inference over sliding windows or on the whole image.")
@_oczss("--cluster-mode", type=CLUSTER_MODES, help="Override the checkpoint's cluster mode.")
@click.option("--config", "recipe", cls=_MethodOption, method="cass",
              help="CASS recipe (see `oczss configs`) [default: cass, Context59's constants; cass-<benchmark> for "
                   "another benchmark's].")
@_cass_models
def predict(inputs, classes, method, out, save, batch_size, workers, device, weights, dino_weights, overwrite,
            checkpoint, text, mode, cluster_mode, recipe, backbone, dino_model):
    """Segment your own images with your own class names.

    INPUTS are image files, folders (searched recursively) and quoted globs ("photos/**/*.jpg"). Resumable: a
    rerun skips the images already done in --out."""
    from oczss.model.weights import RANDOM_NOTE
    from oczss.pipeline.prediction import plan, run
    from oczss.pipeline.segmenter import load

    if method == "cass":
        source, options = "cass", dict(weights=weights or "pretrained", dino_weights=dino_weights or "pretrained",
                                       config=recipe, backbone=backbone, dino_model=dino_model)
    elif _checkpoint_method(checkpoint, method) != "oczss":
        source, options = checkpoint, {"weights": weights} if weights else {}
    else:
        source, options = checkpoint, dict(weights=weights, dino_weights=dino_weights, text=text, mode=mode,
                                           cluster_mode=cluster_mode)
    todo = plan(list(inputs), classes, out, save, overwrite)
    if len(todo.done) == len(todo.jobs):
        click.echo(f"{out}: all {len(todo.jobs)} images are done already ({out}/predictions.jsonl); --overwrite "
                   f"redoes them")
        return
    segmenter = load(source, device=device, **options)
    summary = run(todo, segmenter, batch_size=batch_size, workers=workers)
    failed = f", {len(summary.failed)} unreadable (listed above)" if summary.failed else ""
    click.echo(f"{out}: {summary.written} images segmented in {summary.seconds:.1f} s "
               f"({summary.images_per_second:.2f} img/s), {summary.skipped} done before{failed}; "
               f"{out}/predictions.jsonl lists them" + (f"; {RANDOM_NOTE}" if segmenter.random_weights else ""))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on (another than the "
              "loopback one lets other machines upload).")
@click.option("--port", default=7860, show_default=True, type=click.IntRange(0, 65535),
              help="Port to serve on.")
@click.option("--checkpoint", "checkpoints", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A trained checkpoint (OC-ZSS or Split Matching) to offer beside CASS (repeatable).")
@_device_option
@click.option("--weights", default="pretrained", show_default=True, help="CASS's CLIP weights: pretrained, random "
              "(tests/demo) or a PATH.")
@click.option("--dino-weights", help="CASS's DINO weights [default: pretrained; random with random --weights].")
@_cass_models
@click.option("--config", "recipe", help="CASS recipe (see `oczss configs`) [default: cass].")
@click.option("--max-upload-mb", default=20, show_default=True, type=COUNT, help="Bytes per request, in MB.")
@click.option("--max-images", default=8, show_default=True, type=COUNT, help="Images per request.")
@click.option("--max-pixels", default=25_000_000, show_default=True, type=COUNT, help="Pixels per image.")
def app(host, port, checkpoints, device, weights, dino_weights, backbone, dino_model, recipe, max_upload_mb,
        max_images, max_pixels):
    """A local web page: upload photos, type class names, see the segmentation (pip install 'oczss[app]')."""
    try:
        from oczss.pipeline.app import serve
    except ImportError as e:
        raise OCZSSError(f"oczss app needs its extra: pip install 'oczss[app]' ({e})") from None

    offers = {"CASS (training-free)": ("cass", dict(weights=weights, dino_weights=dino_weights, config=recipe,
                                                    backbone=backbone, dino_model=dino_model))}
    offers.update({f"Checkpoint {path}": (path, {}) for path in checkpoints})
    serve(offers, device=device, host=host, port=port, max_upload_mb=max_upload_mb, max_images=max_images,
          max_pixels=max_pixels)


@main.command()
@click.option("--out", default="oczss-demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for everything the demo writes (reused by a second run).")
@click.option("--iters", type=COUNT, help="Training iterations [default: the demo recipe's 600].")
@click.option("--device", default="cpu", show_default=True, help="cpu, or cuda[:N] on a GPU.")
def demo(out, iters, device):
    """Run precompute -> train -> eval -> predict (OC-ZSS, then CASS, then Split Matching) on the built-in demo
    dataset (random weights, CPU, minutes)."""
    from oczss.model.weights import RANDOM_NOTE
    from oczss.pipeline.demo import run_demo

    r = run_demo(out, iters=iters, device=device)
    rep = r["report"]
    click.echo(f"\noczss demo done ({RANDOM_NOTE}: a pipeline check, not a result):\n"
               f"  dataset      {out}/data/demo\n  mask cache   {r['cache']}  (`oczss cache info --cache {r['cache']}`)\n"
               f"  training run {r['run']}  (config.json, metrics.jsonl, tb/, checkpoints/)\n"
               f"  eval report  {r['eval']}: mIoU(S) {rep['mIoU_seen']:.1f}, mIoU(U) {rep['mIoU_unseen']:.1f}, "
               f"hIoU {rep['hIoU']:.1f}\n  predictions  {out}/predictions ({len(r['predictions'])} files, OC-ZSS), "
               f"{out}/predictions-cass ({len(r['predictions_cass'])} files, CASS)"
               + (f"\n  split match  {r['run_sm']}, {r['eval_sm']}: hIoU {r['report_sm']['hIoU']:.1f}, "
                  f"{out}/predictions-sm ({len(r['predictions_sm'])} files)" if "run_sm" in r else
                  "\n  split match  skipped: pip install 'oczss[sm]' (transformers) to include it"))


@main.group()
def data():
    """Make the benchmark datasets from the official downloads, and check them."""


@data.command("prepare")
@click.argument("name", type=_Names(DATA_NAMES))
@click.option("--raw", type=click.Path(file_okay=False),
              help="Folder holding the downloads, extracted or as the original archives (not needed for demo).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Dataset root to write: what --data-root points at afterwards.")
@click.option("--workers", type=COUNT, help="Processes [default: the CPU cores].")
def data_prepare(name, raw, out, workers):
    """Make the dataset NAME's root from the official downloads.

    Writes the layout that --data-root expects, in parallel; resumable: finished files are kept, and every file is
    written atomically."""
    from oczss.pipeline.data.prepare import prepare

    s = prepare(name, raw, out, workers=workers)
    click.echo(f"{out}: {name} ready, {s.written} files written and {s.skipped} kept from an earlier run in "
               f"{s.seconds:.1f} s; `oczss data check {name} --data-root {out}` checks it")


@data.command("check")
@click.argument("name", required=False, type=_Names(DATA_NAMES))
@click.option("--dataset", type=_Names(DATA_NAMES), help="The same as NAME (the older spelling).")
@click.option("--data-root", type=click.Path(file_okay=False), help="Dataset folder [default: data/<folder>].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of text.")
@click.option("--workers", type=COUNT, help="Reading processes [default: the CPU cores].")
def data_check(name, dataset, data_root, as_json, workers):
    """Check the dataset NAME's root against the official figures.

    Counts per split, images without labels and labels without images, unreadable files, image and label sizes that
    differ, label values outside the class range, pixels per class. Exits 1 on any problem; a subset is a warning."""
    from oczss.pipeline.data.caption_check import check_captions, format_caption_report
    from oczss.pipeline.data.check import check, format_report, to_json

    if name and dataset and name != dataset:
        raise OCZSSError(f"data check: NAME {name} contradicts --dataset {dataset}; give the dataset once")
    if not (name or dataset):
        raise OCZSSError(f"data check needs the dataset: `oczss data check NAME --data-root DIR`, NAME one of "
                         f"{', '.join(DATA_NAMES)}")
    if (name or dataset) == CAPTIONS:
        report = check_captions(data_root, workers=workers)
        text = format_caption_report
    else:
        report, text = check(name or dataset, data_root, workers=workers), format_report
    click.echo(to_json(report) if as_json else text(report))
    if not report["ok"]:
        click.echo(f"{report['root']}: {len(report['problems'])} problem(s)", err=True)
        sys.exit(1)


@main.group()
def convert():
    """Turn checkpoints released by other projects into oczss checkpoints."""


@convert.command("otseg")
@click.argument("ckpt", type=click.Path(dir_okay=False))
@click.option("--dataset", required=True, type=_Names(("voc", "context", "coco")),
              help="The benchmark it was trained on.")
@click.option("--setting", required=True, type=click.Choice(["inductive", "transductive", "fully"]),
              help="How it was trained (fully: fully supervised, every class seen).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="oczss checkpoint to write (a new file).")
@click.option("--text", required=True, type=click.Path(dir_okay=False),
              help="OTSeg's class text embeddings for the dataset (voc12_otseg.npy, context_otseg.npy or "
                   "coco_otseg.npy from its configs/_base_/datasets/text_embedding/); stored in the checkpoint.")
def convert_otseg(ckpt, dataset, setting, out, text):
    """One of OTSeg's released mmseg checkpoints (.pth) as an oczss checkpoint of the OTSeg baseline.

    Its frozen CLIP image tower travels inside the output, so `oczss eval` and `oczss predict` need no hub. Files
    whose keys or shapes differ from the released layout, and files holding pickled code, are refused."""
    from oczss.pipeline.stage2.convert import convert_otseg as run

    s = run(ckpt, dataset, setting, out, text)
    click.echo(f"{out}: OTSeg {dataset} {setting} (source sha256 {s['sha256']}), {s['num_vpt']} VPT tokens, "
               f"position grid for {s['clip_image_size']} px; kept {s['trainable']} trainable and {s['clip']} frozen "
               f"CLIP tensors of {s['keys']}, dropped {s['dropped_dead']} dead weights, {s['dropped_text']} text-"
               f"encoder tensors and {s['dropped_buffer']} loss buffer. Evaluate: oczss eval --checkpoint {out} "
               f"--dataset {dataset}")
