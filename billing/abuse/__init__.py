"""Defences of the pledge form against card testers: limits, honeypot, captcha, origin checks."""
