"""Operational figures: the work waiting in the inbox and the outbox, sends, Stripe latency."""
