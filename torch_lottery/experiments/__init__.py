"""Experiments: models, data sets and runs that reproduce the lottery ticket paper."""
