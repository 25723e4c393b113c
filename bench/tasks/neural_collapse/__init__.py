"""Task ``neural_collapse``: robustness of neural collapse (Su et al., arXiv:2311.07444)."""
