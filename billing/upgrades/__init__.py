"""From a one-time gift to a monthly pledge, by a signed link in the receipt and the widget."""
