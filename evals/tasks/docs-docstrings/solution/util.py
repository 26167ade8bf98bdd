"""Small list helpers."""


def chunk(items, n):
    """Return items split into lists of n (the last one may be shorter)."""
    return [items[i:i + n] for i in range(0, len(items), n)]


def flatten(lists):
    """Return one list with the elements of every list in lists, in order."""
    return [x for sub in lists for x in sub]


def unique(items):
    """Return the items without repeats, keeping the first occurrence's order."""
    seen = set()
    return [x for x in items if not (x in seen or seen.add(x))]
