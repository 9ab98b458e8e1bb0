"""Signed erasure certificates (Ed25519). `issue` is called by the worker's success transaction."""

from core.certificates.service import CertificateRefused, issue, verify_document

__all__ = ["CertificateRefused", "issue", "verify_document"]
