"""Runtime helpers: class indices equal torch's argmax, ties included."""

from __future__ import annotations

import pytest
import torch

from segkit.runtime import class_indices


@pytest.mark.parametrize(("shape", "dim"), [((3, 17, 9, 5), 0), ((2, 4, 6, 7, 8), 1), ((1, 5, 11, 13), 1)])
def test_class_indices_equal_argmax_with_ties_to_the_first_class(shape: tuple[int, ...], dim: int) -> None:
    generator = torch.Generator().manual_seed(3)
    logits = torch.randint(0, 3, shape, generator=generator).float()  # small integers: many ties
    logits[(slice(None),) * dim + (0,)] = 2.0  # the first class ties with every maximum of 2
    expected = logits.argmax(dim)
    assert torch.equal(class_indices(logits, dim), expected)
    assert torch.equal(class_indices(logits.contiguous(memory_format=torch.channels_last)
                                     if logits.ndim == 4 else logits, dim), expected)
