"""segkit: UNet segmentation for 2D/3D medical images with MONAI transforms and fast inference."""

__version__ = "0.1.0"
