"""regexp: a config-driven experiment runner for regularization studies of neural networks."""

__version__ = "0.1.0"
