"""Built-in plugins. Each module here is a plugin registered exactly like a third-party one
(see :data:`ovpanoptic.plugins.BUILTIN_PLUGINS`); core code never imports this package."""
