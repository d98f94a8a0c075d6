"""The package version, in a leaf module so that labelling code can read it without
importing the package (and every layer) through ``diffusion_jax/__init__.py``."""

__version__ = "0.1.0"
