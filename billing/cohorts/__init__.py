"""Retention by cohort: supporters grouped by when or where they started, month by month."""
