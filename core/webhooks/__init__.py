"""Per-tenant webhook endpoints and signed, retried deliveries (Standard Webhooks)."""
