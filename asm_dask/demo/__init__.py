"""Synthetic MOSAIKS countries that know their truth: :func:`make_country` writes one in
the seed notebook's file formats, :func:`score_against_truth` holds a run to it."""

from .country import DemoFiles, make_country, write_districts
from .truth import score_against_truth, score_map_against_truth

__all__ = ["DemoFiles", "make_country", "score_against_truth", "score_map_against_truth", "write_districts"]
