"""Writes: every change to the database goes through a function in this package
(keyword-only arguments, ``@transaction.atomic``). Reads live in ``reviewer/selectors.py``."""
