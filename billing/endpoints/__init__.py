"""Outgoing webhooks: the newsroom's own systems told, signed, about pledges, payments, readers."""
