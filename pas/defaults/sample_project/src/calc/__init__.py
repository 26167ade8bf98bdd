"""calc: a tiny arithmetic library, the PAS demo's sample project."""


def add(a: float, b: float) -> float:
    """Return a + b.

    >>> add(2, 3)
    5
    """
    return a + b


def mean(values: list[float]) -> float:
    """Arithmetic mean; raises ValueError on an empty list.

    >>> mean([1, 2, 3])
    2.0
    """
    if not values:
        raise ValueError("mean of no values")
    return sum(values) / len(values)
