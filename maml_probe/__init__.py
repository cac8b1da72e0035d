"""maml_probe: reproduce, probe and extend "Decoupling Adaptation from Modeling with
Meta-Optimizers for Meta Learning" (Arnold, Iqbal & Sha)."""
__version__ = "0.1.0"
