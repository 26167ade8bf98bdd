"""Case conversions."""


def snake_to_camel(s):
    head, *rest = s.split("_")
    return head + "".join(w.capitalize() for w in rest)
