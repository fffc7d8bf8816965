"""Tests of ovpanoptic.formats, one file per format (tests mirror the package layout)."""
