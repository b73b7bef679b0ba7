"""The `oczss` command line: parse, build a config, call the library. Nothing else lives here."""

from __future__ import annotations

import os
import sys

import click

from oczss import __version__
from oczss.errors import OCZSSError


class _Group(click.Group):
    """Turns OCZSSError into a one-line message on stderr and exit status 2, without a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OCZSSError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="oczss")
def main():
    """OC-ZSS: zero-shot semantic segmentation with object-centric refinement."""


def _ints(ctx, param, value: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers") from None
    if not out:
        raise click.BadParameter("give at least one value")
    return out


def _cache_option(f):
    from oczss.cache.store import default_cache_url

    return click.option("--cache", "cache_url", default=default_cache_url, show_default="$OCZSS_CACHE or oczss-cache.zarr",
                        help="Cache location: a local path or any fsspec URL (s3://, gs://, memory://).")(f)


DATASETS = click.Choice(["coco", "voc", "context", "demo"])


@main.command()
@click.option("--dataset", required=True, type=DATASETS, help="Benchmark whose images to cluster.")
@click.option("--data-root", type=click.Path(file_okay=False), help="Dataset folder [default: data/<VOC2012|VOC2010|MSCOCO|demo>].")
@click.option("--split", default="train", show_default=True, type=click.Choice(["train", "val", "all"]))
@_cache_option
@click.option("--ks", default="6,8", show_default=True, callback=_ints, help="Cluster counts K (one FPS run serves all).")
@click.option("--input-size", default=512, show_default=True, help="R: the whole image is resized to R x R for DINO.")
@click.option("--grid", default=64, show_default=True, help="S: DINO features are resized to S x S before clustering.")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--weights", default="pretrained", show_default=True, help="pretrained (timm hub cache), random (tests/demo) or a checkpoint PATH.")
@click.option("--dino-model", default="vit_base_patch16_224.dino", show_default=True, help="timm model name.")
@click.option("--seed", default=0, show_default=True, help="Seed of the first FPS centre (with the image id).")
@click.option("--shard-size", default=256, show_default=True, help="Images per shard object.")
@click.option("--decode-threads", type=int, default=lambda: min(16, os.cpu_count() or 1), show_default="CPU cores, at most 16",
              help="Image decoding threads per process.")
@click.option("--scheduler", default=None, help="Address of a dask.distributed scheduler (default: dask's local scheduler).")
def precompute(dataset, data_root, split, cache_url, ks, input_size, grid, batch_size, device, weights, dino_model,
               seed, shard_size, decode_threads, scheduler):
    """Stage 1: cluster DINO features of every image into the mask cache (resumable)."""
    from oczss.pipeline.precompute import PrecomputeConfig, precompute as run

    cfg = PrecomputeConfig(dataset=dataset, cache=cache_url, data_root=data_root, split=split, ks=ks,
                           input_size=input_size, grid=grid, batch_size=batch_size, device=device, weights=weights,
                           dino_model=dino_model, seed=seed, shard_size=shard_size, decode_threads=decode_threads,
                           scheduler=scheduler)
    s = run(cfg)
    nfail = sum(len(v) for v in s.failed.values())
    click.echo(f"{cache_url}: {s.images} images in {s.shards_run} shards ({s.shards_skipped} already done) "
               f"in {s.seconds:.1f} s, {s.images_per_second:.1f} img/s; {nfail} failed"
               + (" (listed above)" if nfail else "")
               + ("; RANDOM WEIGHTS: for tests and the demo only" if s.random_weights else ""))


@main.group()
def cache():
    """Inspect, check, picture and export a mask cache."""


@cache.command()
@_cache_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(cache_url, as_json):
    """Parameters, splits, completeness, size on disk and cluster-size statistics."""
    import json

    from oczss.cache.info import cache_info, format_info

    data = cache_info(cache_url)
    click.echo(json.dumps(data, indent=2) if as_json else format_info(data))


@cache.command()
@_cache_option
def verify(cache_url):
    """Read every shard; check shapes, dtypes, label values and completion records."""
    from oczss.cache.verify import verify as run

    problems = run(cache_url)
    for line in problems:
        click.echo(line)
    if problems:
        click.echo(f"{cache_url}: {len(problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo(f"{cache_url}: ok")


@cache.command()
@click.argument("image_id")
@click.option("--dataset", required=True, type=DATASETS)
@click.option("--k", default=6, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--split", type=click.Choice(["train", "val"]), help="Split holding the image [default: search].")
@click.option("--data-root", type=click.Path(file_okay=False), help="Dataset folder, if it moved since precompute.")
@_cache_option
def show(image_id, dataset, k, out, split, data_root, cache_url):
    """Picture an image beside its cluster map with cluster boundaries."""
    from oczss.cache.show import show as run

    click.echo(run(cache_url, image_id, dataset, k, out, split=split, data_root=data_root))


@cache.command()
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", default="hdf5", show_default=True, type=click.Choice(["hdf5"]))
@_cache_option
def export(out, fmt, cache_url):
    """Write the cache's arrays and metadata to one HDF5 file."""
    from oczss.cache.export import export_hdf5

    click.echo(export_hdf5(cache_url, out))
