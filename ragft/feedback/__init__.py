"""Ratings and corrections collected by `ragft serve`: the store, and training records from it."""
