"""Rewind points and the baseline tickets built from them."""

from .baselines import default_init, random_reinit, sign_preserving_reinit, signed_constant
from .point import RewindPoint

__all__ = ["RewindPoint", "default_init", "random_reinit", "sign_preserving_reinit", "signed_constant"]
