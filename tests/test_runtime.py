"""Runtime helpers: class indices equal torch's argmax (ties included); the inference memory-layout rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segkit.errors import SegkitError
from segkit.runtime import class_indices, resolve_device, triton_kernels_usable, use_channels_last_inference


@pytest.mark.parametrize(("shape", "dim"), [((3, 17, 9, 5), 0), ((2, 4, 6, 7, 8), 1), ((1, 5, 11, 13), 1)])
def test_class_indices_equal_argmax_with_ties_to_the_first_class(shape: tuple[int, ...], dim: int) -> None:
    generator = torch.Generator().manual_seed(3)
    logits = torch.randint(0, 3, shape, generator=generator).float()  # small integers: many ties
    logits[(slice(None),) * dim + (0,)] = 2.0  # the first class ties with every maximum of 2
    expected = logits.argmax(dim)
    assert torch.equal(class_indices(logits, dim), expected)
    assert torch.equal(class_indices(logits.contiguous(memory_format=torch.channels_last)
                                     if logits.ndim == 4 else logits, dim), expected)


def test_inference_layout_keeps_instance_norm_contiguous_where_no_triton_kernels_run() -> None:
    cpu = torch.device("cpu")
    assert not triton_kernels_usable(cpu)
    assert not use_channels_last_inference("auto", "instance", cpu)
    assert use_channels_last_inference("auto", "batch", cpu)
    assert use_channels_last_inference("channels_last", "instance", cpu)
    assert not use_channels_last_inference("contiguous", "batch", cpu)
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        assert use_channels_last_inference("auto", "instance", gpu) == triton_kernels_usable(gpu)


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="needs Linux's /proc/cpuinfo")
def test_native_bf16_follows_the_cpu_flags() -> None:
    from segkit.runtime import cpu_has_native_bf16

    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    assert cpu_has_native_bf16() == bool(flags & {"amx_tile", "avx512_bf16"})


@pytest.mark.parametrize(("key", "fix"), [("--device", "use --device cpu"),
                                          ("train.device", "use --set train.device=cpu"),
                                          ("device=", "use device='cpu'")])
def test_a_device_error_names_how_the_device_was_chosen(key: str, fix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SegkitError, match=f"^{key} 'cuda' requested but no CUDA GPU is available; {fix}$"):
        resolve_device("cuda", key)
    with pytest.raises(SegkitError, match=f"^{key} 'tpu' is not one of auto, cpu, cuda, cuda:N$"):
        resolve_device("tpu", key)
    assert resolve_device("auto", key) == torch.device("cpu")
