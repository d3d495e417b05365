"""``segkit models``: every registered encoder × {2D, 3D} as a whole UNet, with size and cost."""

from __future__ import annotations

from rich.table import Table

from segkit.config import ModelCfg
from segkit.errors import ConfigError
from segkit.models.summary import REFERENCE_INPUT, ModelSummary, summarize
from segkit.registry import ENCODERS


def summaries(encoders: list[str] | None = None, dims: list[int] | None = None) -> list[ModelSummary]:
    """Summaries of the default UNet (transposed, concat, 1 input channel, 4 classes) per encoder and dims."""
    for name in encoders or []:
        if name not in ENCODERS:
            raise ConfigError(f"--encoder: {ENCODERS.unknown_message(name)}")
    return [summarize(ModelCfg(encoder=name, spatial_dims=d))  # a name or dims given twice is listed once
            for name in dict.fromkeys(encoders or ENCODERS.names()) for d in dict.fromkeys(dims or [2, 3])]


def model_table(rows: list[ModelSummary]) -> Table:
    """The rows as a rich table."""
    sizes = ", ".join(f"{d}D 1×1×{'×'.join(map(str, s))}" for d, s in REFERENCE_INPUT.items())
    table = Table(title=f"UNet per encoder (transposed, concat, 4 classes); GFLOPs at {sizes}")
    for column in ("encoder", "dims", "parameters", "encoder parameters", "GFLOPs"):
        table.add_column(column, justify="left" if column == "encoder" else "right")
    for row in rows:
        table.add_row(row.encoder, f"{row.spatial_dims}D", f"{row.parameters:,}", f"{row.encoder_parameters:,}",
                      f"{row.gflops:,.1f}")
    return table
