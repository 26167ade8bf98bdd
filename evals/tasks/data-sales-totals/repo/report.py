import csv


def totals(path):
    raise NotImplementedError
