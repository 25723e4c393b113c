"""bench: a benchmark suite for robustness and the science of deep learning, built on PyTorch Lightning."""

__version__ = "0.1.0"
