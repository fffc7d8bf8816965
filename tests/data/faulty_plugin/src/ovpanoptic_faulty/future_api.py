"""Declares a plugin API this ovpanoptic does not provide."""

from ovpanoptic import hookimpl
from ovpanoptic.testing import TilesGenerator

OVPANOPTIC_PLUGIN_API = "2.0"


@hookimpl
def register_proposal_generators(register):
    register("future-tiles", TilesGenerator)
