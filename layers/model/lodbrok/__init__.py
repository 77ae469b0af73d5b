"""Lodbrok: the shared model package used by the predict and retrain functions."""

__version__ = "0.1.0"
