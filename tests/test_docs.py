"""docs/CONFIG.md documents every key of the schema."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from segkit.config import Config

DOC = Path(__file__).resolve().parents[1] / "docs" / "CONFIG.md"


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys += _keys(field.annotation, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_every_config_key_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [key for key in _keys(Config) if f"`{key}`" not in text]
    assert not missing, f"undocumented config keys: {missing}"
