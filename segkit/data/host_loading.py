"""Reading an image for prediction without the copies MONAI's ``LoadImage`` + ``EnsureChannelFirst`` make.

Both end in ``convert_to_tensor``, which makes every array C-contiguous. A NIfTI volume is stored F-ordered, so
that is a transposing copy on the host — over a second for a 512×512×300 int16 CT, longer than inflating it.
Here the same readers and metadata are used, but the array keeps the file's layout and dtype; the one copy
that makes it contiguous (and float) happens on the device, where it costs milliseconds
(:class:`ToDeviceAsFloatd`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.data import ImageReader, MetaTensor
from monai.data.utils import is_no_channel
from monai.transforms import MapTransform
from monai.transforms.io.array import switch_endianness
from monai.utils import ImageMetaKey, MetaKeys

from segkit.errors import DataError
from segkit.io.atomic import IMAGE_SUFFIXES

TORCH_SAFE_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
                     torch.float16, torch.float32, torch.float64)


def load_channel_first(names: str | Sequence[str], readers: Sequence[ImageReader]) -> MetaTensor:
    """One case's image, channel first, with the metadata ``LoadImage`` + ``EnsureChannelFirst`` give it
    (affine, original affine, spatial shape, file name), in the file's own memory layout and dtype."""
    names = [names] if isinstance(names, str) else list(names)
    reader = next((r for r in readers if r.verify_suffix(names)), None)
    if reader is None:
        raise DataError(f"{names[0]}: not an image format segkit reads ({', '.join(IMAGE_SUFFIXES)}) — convert the "
                        "file to NIfTI, e.g. with SimpleITK")
    array, meta = reader.get_data(reader.read(names))
    meta = switch_endianness(meta, "<")
    meta[ImageMetaKey.FILENAME_OR_OBJ] = names[0]
    tensor = torch.from_numpy(array)
    if tensor.dtype not in TORCH_SAFE_DTYPES:  # e.g. uint16/uint32: few torch kernels take them
        tensor = tensor.to(torch.int64 if not tensor.is_floating_point() else torch.float32)
    image = MetaTensor(tensor, meta=meta)
    channel = meta.get(MetaKeys.ORIGINAL_CHANNEL_DIM, float("nan"))
    return image[None] if is_no_channel(channel) else image.movedim(int(channel), 0)


class ToDeviceAsFloatd(MapTransform):
    """Move images to ``device`` as they are laid out (a plain copy), then make them contiguous float32 there."""

    def __init__(self, keys: str | Sequence[str], device: torch.device) -> None:
        super().__init__(keys)
        self.device = device

    def __call__(self, data: dict) -> dict:
        out = dict(data)
        for key in self.key_iterator(out):
            out[key] = out[key].to(self.device).to(dtype=torch.float32, memory_format=torch.contiguous_format)
        return out
