"""Installs :class:`ovpanoptic.testing.FakeComponentsPlugin` through an entry point."""

from ovpanoptic.testing import FakeComponentsPlugin

plugin = FakeComponentsPlugin()
