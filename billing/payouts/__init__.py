"""Payouts tied out against the ledger, the drift check's record, and exports for accountants."""
