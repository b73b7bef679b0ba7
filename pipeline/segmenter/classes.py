"""The class names a segmenter is asked for: one class per entry, synonyms separated by `|`.

`"cat,sofa|couch"` (a string, split at commas) and `["cat", "sofa|couch"]` (a list, one class per item) give the
same two classes. Every name is stripped; an empty name, a name given twice (ignoring case, synonyms included:
"Cat,cat" and "cat,cat|cat" are refused) and more classes than a 16-bit label map can hold are refused in one line.
"""

from __future__ import annotations

from collections.abc import Iterable

from oczss.errors import ClassListError

MAX_CLASSES = 65536  # label maps are uint8 up to 256 classes, uint16 beyond


def parse_classes(classes: str | Iterable[str | Iterable[str]], what: str = "classes") -> tuple[tuple[str, ...], ...]:
    """Per class, its names (first = the name shown); `what` names the argument in errors (`--classes`)."""
    if isinstance(classes, str):
        given, items = classes, classes.split(",")
    else:
        items = ["|".join(c) if not isinstance(c, str) else c for c in classes]
        given = ",".join(items)
    shown = f'{what} "{given}"' if len(given) <= 80 else f'{what} "{given[:77]}..."'
    hint = "give distinct, non-empty class names, e.g. \"cat,sofa|couch\" (| separates synonyms)"
    if not items or items == [""]:
        raise ClassListError(f"{shown}: no class names; {hint}")
    out, seen = [], {}
    for i, item in enumerate(items, 1):
        names = tuple(n.strip() for n in item.split("|"))
        if not all(names):
            raise ClassListError(f"{shown}: class {i} ({item.strip() or 'empty'!r}) has an empty name; {hint}")
        for name in names:
            if name.lower() in seen:
                raise ClassListError(f"{shown}: {name!r} is given twice (classes {seen[name.lower()]} and {i}; names "
                                     f"are compared ignoring case, synonyms included); {hint}")
            seen[name.lower()] = i
        out.append(names)
    if len(out) > MAX_CLASSES:
        raise ClassListError(f"{shown}: {len(out)} classes; a label map holds at most {MAX_CLASSES}")
    return tuple(out)
