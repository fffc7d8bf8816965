"""A plugin that fails to import, as a plugin with a missing dependency would."""

import ovpanoptic_dependency_that_does_not_exist  # noqa: F401
