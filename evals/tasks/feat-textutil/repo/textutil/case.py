"""Case conversions."""
