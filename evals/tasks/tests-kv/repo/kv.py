def parse_kv(text):
    out = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(f"no '=' in {part!r}")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out
