"""Test fixture: plugin-author mistakes, one per entry point."""
