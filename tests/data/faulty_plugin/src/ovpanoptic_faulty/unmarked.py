"""Forgot @hookimpl: ovpanoptic would never call this."""

from ovpanoptic.testing import TilesGenerator


def register_proposal_generators(register):
    register("unmarked-tiles", TilesGenerator)
