"""Resolving --classes: names (any case, any synonym), wnids, indices; ambiguity and typos made explicit."""

import pytest

from seprobe import SeprobeError
from seprobe.data.imagenet_classes import imagenet_classes, resolve_class, resolve_classes

from .conftest import SHARED


def test_the_papers_classes():
    assert resolve_classes("goldfish,PUG,airliner,Cliff") == [1, 254, 404, 972]
    assert resolve_classes(["Carassius auratus", "n02110958", "404", "drop-off"]) == [1, 254, 404, 972]


@pytest.mark.parametrize("query,fragments", [
    ("plane", ["404 n02690373 airliner (the SENet paper's 'plane'", "726 n03954731 plane, carpenter's plane"]),
    ("crane", ["134 n02012849 crane", "517 n03126707 crane"]),
])
def test_ambiguous_names_list_the_candidates(query, fragments):
    with pytest.raises(SeprobeError, match="ambiguous") as err:
        resolve_class(query)
    assert all(f in str(err.value) for f in fragments)


@pytest.mark.parametrize("query,match", [("goldfsh", "did you mean goldfish"), ("1000", "out of range"),
                                         ("n00000000", "unknown ImageNet wnid")])
def test_unknown_classes(query, match):
    with pytest.raises(SeprobeError, match=match):
        resolve_class(query)


@pytest.mark.skipif(not (SHARED / "data" / "imagenet-samples").is_dir(), reason="needs ../shared/data")
def test_class_table_matches_the_sample_file_names():
    files = sorted(p.name for p in (SHARED / "data" / "imagenet-samples").glob("*.JPEG"))
    assert [f.split("_")[0] for f in files] == [c.wnid for c in imagenet_classes()]


@pytest.mark.parametrize("query,indices", [("shark", [2, 3, 4]), ("retriever", [205, 206, 207, 208, 209]),
                                           ("Shark", [2, 3, 4])])
def test_partial_names_list_every_candidate_instead_of_picking_one(query, indices):
    """A word several classes share (great white / tiger / hammerhead shark) is never resolved to the lowest index."""
    wnids = {2: "n01484850", 3: "n01491361", 4: "n01494475", 205: "n02099267", 206: "n02099429", 207: "n02099601",
             208: "n02099712", 209: "n02099849"}  # ImageNet's synsets, in index order
    with pytest.raises(SeprobeError, match=f"class name '{query}' is ambiguous") as err:
        resolve_class(query)
    assert all(f"{i} {wnids[i]}" in str(err.value) for i in indices)
    with pytest.raises(SeprobeError, match="ambiguous"):
        resolve_classes(f"goldfish,{query}")


def test_a_partial_name_one_class_carries_resolves_to_it():
    assert resolve_class("white shark") == 2 and resolve_class("hammerhead") == 4 and resolve_class("tiger shark") == 3
