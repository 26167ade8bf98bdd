"""Reports about a store."""


def summary(store):
    return f"{len(store.items)} items, value {store.value():.2f}"
