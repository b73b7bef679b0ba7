"""The training loop every method shares (loop.py), what a method brings to it (task.py), and the registry of
trainable methods: one `register` line per method, the import path of its Task, so a method's code is imported
only when a run of it starts and `--method` is checked without importing torch."""

from __future__ import annotations

import importlib

from oczss.errors import OCZSSError

_TASKS: dict[str, str] = {}  # method -> "package.module:Class"


def register(name: str, target: str) -> None:
    """Make `target` (a Task subclass, "package.module:Class") the trainer of method `name`."""
    _TASKS[name] = target


register("oczss", "oczss.pipeline.stage2.train:OCZSSTask")
register("simzss", "oczss.pipeline.simzss.train:SimZSSTask")
register("sm", "oczss.pipeline.sm.train:SMTask")


def names() -> list[str]:
    """The methods `oczss train --method` takes."""
    return list(_TASKS)


def task_class(name: str):
    """The Task subclass of method `name`; one-line error for a method that cannot be trained."""
    if name not in _TASKS:
        raise OCZSSError(f"--method {name!r} cannot be trained: choose one of {', '.join(_TASKS)}")
    module, _, attr = _TASKS[name].partition(":")
    return getattr(importlib.import_module(module), attr)
