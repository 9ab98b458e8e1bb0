"""Batches: per model one erasure request, or a chain of one per concept, under a shared batch_id, with
aggregated status."""
