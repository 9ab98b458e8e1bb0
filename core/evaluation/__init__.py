"""Evaluation: adherence, erasure metrics (UA/IRA/CRA), noise-space metrics, robustness probe, grids."""
