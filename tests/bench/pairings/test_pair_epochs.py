"""A `pairs` epoch: every pair once, in whole batches that never hold two captions of one image, and only the
epoch's last len % batch pairs dropped (not a remainder per round of one caption per image)."""

import pytest
import torch

from tempbench.pairings.image_text.pairs import TrainingPairs, without_repeats


def pairs_of(counts: list[int]) -> TrainingPairs:
    """Pairs of images with `counts` captions each, stored image by image."""
    counts_t = torch.tensor(counts)
    images = torch.repeat_interleave(torch.arange(len(counts)), counts_t)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), counts_t.cumsum(0)])
    return TrainingPairs(torch.arange(len(images)), images, offsets)


@pytest.mark.parametrize(("counts", "batch"), [([5] * 600, 64), ([5] * 97 + [4, 3, 1], 32), ([3] * 16, 8)])
def test_a_pairs_epoch_visits_every_pair_but_the_tail_in_batches_of_distinct_images(counts, batch):
    pairs = pairs_of(counts)
    for seed in range(3):
        order = pairs.epoch(batch, torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 10))
        m = len(pairs.captions)
        assert len(order) == m // batch * batch  # drop_last once an epoch, not per round
        assert len(set(order.tolist())) == len(order)  # each pair at most once
        for batch_pairs in order.view(-1, batch):
            assert len(set(pairs.images[batch_pairs].tolist())) == batch


def test_the_flickr8k_shape_drops_one_percent_not_six():
    """6,000 images × 5 captions at batch 512: 58 batches (29,696 pairs) an epoch; cutting each round of 6,000 to
    whole batches would keep 5 × 11 = 55 (28,160)."""
    pairs = pairs_of([5] * 6000)
    order = pairs.epoch(512, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
    assert len(order) == 58 * 512
    assert all(len(set(pairs.images[b].tolist())) == 512 for b in order.view(-1, 512))


def test_without_repeats_swaps_only_where_a_batch_repeats_a_group():
    groups = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    assert without_repeats(torch.arange(8), groups, 4).tolist() == list(range(8))  # nothing to repair
    order = torch.tensor([0, 1, 2, 4, 3, 5, 6, 7])  # batch 0 holds group 0 twice (entries 0 and 4)
    fixed = without_repeats(order, groups, 4)
    assert sorted(fixed.tolist()) == list(range(8))
    assert all(len(set(groups[b].tolist())) == 4 for b in fixed.view(-1, 4))
    assert fixed[:3].tolist() == [0, 1, 2]  # the first occurrence stays


def test_an_impossible_cut_is_an_error():
    with pytest.raises(ValueError, match="too many"):
        without_repeats(torch.arange(6), torch.tensor([0, 0, 0, 0, 1, 2]), 2)
