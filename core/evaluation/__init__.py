"""Evaluation: judges, held-out evidence, adherence, erasure metrics (UA/IRA/CRA), noise-space metrics, the
robustness probe, grids. Import the modules themselves: the package imports nothing, so its torch-free parts
(`evidence_schema`, `vocabulary`) stay light for the API process."""
