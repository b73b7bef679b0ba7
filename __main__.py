"""`python -m oczss` is the `oczss` command."""

from oczss.cli import main

main(prog_name="oczss")
