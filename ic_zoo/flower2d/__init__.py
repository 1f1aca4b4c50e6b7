"""Flower2D: the ground-truth dataset and the offline model zoo trained by the project."""
