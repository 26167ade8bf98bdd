"""Length conversions."""
