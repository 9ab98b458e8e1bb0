"""Model versions: v1 is the registered source; each applied erasure makes the next version (its lineage)."""
