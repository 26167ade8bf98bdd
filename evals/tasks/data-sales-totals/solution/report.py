import csv


def totals(path):
    out = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["amount"].strip():
                out[row["category"]] = out.get(row["category"], 0.0) + float(row["amount"])
    return {k: round(v, 2) for k, v in out.items()}
