"""The package version (one place; ``maml_probe.__version__`` reads it)."""
__version__ = "0.1.0"
