def chunk(items, n):
    return [items[i:i + n] for i in range(0, len(items), n)]


def flatten(lists):
    return [x for sub in lists for x in sub]


def unique(items):
    seen = set()
    return [x for x in items if not (x in seen or seen.add(x))]
