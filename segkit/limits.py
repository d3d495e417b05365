"""Size limits shared by the readers (a header declaring more is corrupt) and the config (a window this large
cannot be meant): kept free of imports so the config layer can use them."""

MAX_VOXELS = 2**31
MAX_AXIS = 10_000
