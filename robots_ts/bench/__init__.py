"""Measurements behind ``robots-ts bench``: each prints JSON, none is a timed test."""
