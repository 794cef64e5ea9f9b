"""Annual giving statements: per reader and fiscal year, as HTML, PDF, mail and a report."""
