"""Reports about a store."""
