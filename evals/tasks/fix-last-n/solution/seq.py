def last_n(items, n):
    """The last n items of items."""
    return items[len(items) - n:] if n > 0 else []
