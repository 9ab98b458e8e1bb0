"""Batches: one erasure request per model under a shared batch_id, with aggregated status."""
