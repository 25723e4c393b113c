"""Datasets: embedded defaults that need no download, and loaders for the real files."""
