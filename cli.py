"""The `oczss` command line: parse, build a config, call the library. Nothing else lives here."""

from __future__ import annotations

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
