"""Models: registered encoders, upsampling modes and skip fusions assembled into a UNet."""

from segkit.models.unet import UNet, build_model, check_model_config

__all__ = ["UNet", "build_model", "check_model_config"]
