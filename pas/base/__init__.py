"""Layer 0, the base: errors, secret redaction, safe text, outside programs, port owners. Imports nothing of PAS."""
