"""The colours of `--paint`: one per class for every dataset, and ADE20k's the MIT CSAIL table
(data/color150.mat of CSAILVision/semantic-segmentation-pytorch) in repro's class order."""

from __future__ import annotations

import numpy as np
import pytest

from repro.datasets import DATASETS
from repro.datasets.palettes import ADE20K_COLOURS, rgb_triples
from repro.datasets.registry import bit_colour_map, palette


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_dataset_has_one_colour_per_class(name):
    colours = palette(name)
    assert colours.dtype == np.uint8 and colours.shape == (len(DATASETS[name].class_names), 3)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_a_shipped_table_has_exactly_the_class_count(name):
    table = DATASETS[name].colours
    if table is not None:
        assert len(table) == DATASETS[name].num_classes


def test_the_tables_shipped_and_a_spec_with_a_wrong_count_is_refused():
    import dataclasses

    assert [name for name, spec in DATASETS.items() if spec.colours] == ["ade20k", "cityscapes"]
    with pytest.raises(ValueError, match="149 colours for 150 classes"):
        dataclasses.replace(DATASETS["ade20k"], colours=ADE20K_COLOURS[:149])


def _colour_of(name: str, class_name: str) -> tuple[int, ...]:
    return tuple(palette(name)[DATASETS[name].class_names.index(class_name)].tolist())


def test_ade20k_uses_the_csail_table_in_repros_class_order():
    assert _colour_of("ade20k", "wall") == (120, 120, 120)
    assert _colour_of("ade20k", "building, edifice") == (180, 120, 120)
    assert _colour_of("ade20k", "sky") == (6, 230, 230)
    assert _colour_of("ade20k", "person, individual, someone, somebody, mortal, soul") == (150, 5, 61)
    assert _colour_of("ade20k", "flag") == (92, 0, 255)
    assert not np.array_equal(palette("ade20k"), bit_colour_map(150))


def test_ade20k_colours_are_distinct_but_for_the_one_pair_the_source_shares():
    colours = [tuple(c) for c in palette("ade20k").tolist()]
    shared = [i for i, c in enumerate(colours) if colours.count(c) > 1]
    assert shared == [6, 48]  # 'road, route' and 'skyscraper': both (140, 140, 140) in color150.mat
    assert colours[6] == (140, 140, 140)


@pytest.mark.parametrize("name", ["cocostuff10k", "vspw"])
def test_datasets_without_a_published_table_keep_the_distinct_deterministic_map(name):
    colours = palette(name)
    assert DATASETS[name].colours is None and np.array_equal(colours, bit_colour_map(DATASETS[name].num_classes))
    assert len({tuple(c) for c in colours.tolist()}) == DATASETS[name].num_classes


def test_hex_tables_decode_to_triples_and_refuse_a_ragged_table():
    assert rgb_triples("787878b47878") == ((120, 120, 120), (180, 120, 120))
    assert len(ADE20K_COLOURS) == 150
    with pytest.raises(ValueError, match="not a list of RGB triples"):
        rgb_triples("7878")
