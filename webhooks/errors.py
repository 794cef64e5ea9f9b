"""What can go wrong while applying an event, split by whether trying again can help."""


class RetryLater(Exception):
    """Transient: Stripe does not know the object yet, or a concurrent writer won a race."""


class EventRejected(Exception):
    """Permanent: the event contradicts the ledger; it stays failed for an operator to read."""
