"""Thin operators that call ``include/``."""
