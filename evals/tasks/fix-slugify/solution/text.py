import re


def slugify(s):
    s = re.sub(r"[^a-z0-9 -]", "", s.lower())
    return "-".join(w for w in re.split(r"[ -]+", s) if w)
