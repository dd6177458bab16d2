"""ImageNet-1k classes: index (0-based, synsets sorted), WordNet id, name and synonyms; and resolving a user's
``--classes`` (names in any case, any synonym, wnids or indices) to indices, with ambiguity made explicit.

``data/imagenet_classes.tsv`` was written from torchvision's category names and timm's synset and lemma lists
(public ImageNet metadata); the same order as the files of ``shared/data/imagenet-samples``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from ..errors import SeprobeError

#: Names the SENet paper uses that are not (or not only) ImageNet's own: Fig. 6's "plane" is the airliner.
PAPER_ALIASES = {"plane": (404,), "airplane": (404,), "aeroplane": (404,)}


@dataclass(frozen=True)
class ImageNetClass:
    index: int
    wnid: str
    name: str
    synonyms: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.index} {self.wnid} {', '.join(self.synonyms)}"


@cache
def imagenet_classes() -> tuple[ImageNetClass, ...]:
    text = resources.files("seprobe").joinpath("data/imagenet_classes.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines()[1:]]
    return tuple(ImageNetClass(int(i), w, n, tuple(s.strip() for s in syn.split(","))) for i, w, n, syn in rows)


@cache
def _by_wnid() -> dict[str, int]:
    return {c.wnid: c.index for c in imagenet_classes()}


def wnid_to_index(wnid: str) -> int | None:
    return _by_wnid().get(wnid)


def _norm(s: str) -> str:
    return re.sub(r"[\s_]+", " ", s.strip().lower())


def resolve_class(query: str) -> int:
    """One class index for ``query``: an index, a wnid, or a name/synonym matching exactly one class.

    A name that several classes carry ("crane"), or that the paper uses for another class than ImageNet's
    ("plane"), is ambiguous: the error lists the candidates.
    """
    classes = imagenet_classes()
    q = _norm(str(query))
    if re.fullmatch(r"[0-9]+", q):  # ASCII digits: str.isdigit() is also true for "²", which int() refuses
        i = int(q)
        if 0 <= i < len(classes):
            return i
        raise SeprobeError(f"class index {i} is out of range; valid: 0 to {len(classes) - 1}")
    if re.fullmatch(r"n\d{8}", q):
        if q in _by_wnid():
            return _by_wnid()[q]
        raise SeprobeError(f"unknown ImageNet wnid {query!r}; valid: one of the 1000 ImageNet-1k synsets, "
                           "e.g. n01443537")
    exact = {c.index for c in classes if q == _norm(c.name) or q in (_norm(s) for s in c.synonyms)}
    exact |= set(PAPER_ALIASES.get(q, ()))
    if len(exact) == 1:
        return exact.pop()
    if exact:
        raise SeprobeError(f"class name {query!r} is ambiguous; valid: one of "
                           + "; ".join(_candidate(classes[i], q) for i in sorted(exact)) + " (give the index or wnid)")
    words = {c.index for c in classes if any(re.search(rf"\b{re.escape(q)}\b", _norm(s)) for s in c.synonyms)}
    if len(words) == 1:
        return words.pop()
    if words:
        listed = sorted(words)[:8]
        more = f" and {len(words) - 8} more" if len(words) > 8 else ""
        raise SeprobeError(f"class name {query!r} is ambiguous; valid: one of "
                           + "; ".join(classes[i].describe() for i in listed) + more + " (give the index or wnid)")
    names = [_norm(s) for c in classes for s in c.synonyms]
    close = difflib.get_close_matches(q, names, n=4, cutoff=0.75)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise SeprobeError(f"unknown ImageNet class {query!r}; {hint}valid: a class name or synonym, a wnid "
                       "(n01443537) or an index 0-999")


def _candidate(c: ImageNetClass, q: str) -> str:
    note = " (the SENet paper's 'plane', Fig. 6)" if c.index in PAPER_ALIASES.get(q, ()) else ""
    return c.describe() + note


def resolve_classes(spec: str | list[str]) -> list[int]:
    """``"goldfish,pug,404"`` -> ``[1, 254, 404]`` (order kept, duplicates dropped)."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for item in items:
        if item.strip():
            i = resolve_class(item)
            if i not in out:
                out.append(i)
    if not out:
        raise SeprobeError("no class given; valid: comma-separated names, wnids or indices, e.g. goldfish,pug")
    return out
