"""The embeddable support widget: its static files, its configuration endpoint and a demo page."""
