"""Exceptions the erasure engine raises: bad input (before any compute) and cancellation."""

from __future__ import annotations


class ErasureInputError(ValueError):
    """The request or the model cannot be erased as given; the message says why in plain words."""


class UnsupportedModelError(ErasureInputError):
    """The model folder is not a Stable Diffusion (1.x, 2.x, XL) diffusers pipeline with a UNet2DConditionModel."""


class ErasureCancelled(RuntimeError):
    """`should_stop()` returned True; the run stopped within one training step and wrote nothing further."""
