import os
import tempfile
import unittest

from report import totals


class Hidden(unittest.TestCase):
    def test_sample(self):
        self.assertEqual(totals("data/sales.csv"), {"books": 19.75, "games": 40.0})

    def test_other_file(self):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "x.csv")
            with open(p, "w") as f:
                f.write("date,category,amount\n2024-01-01,a,0.1\n2024-01-01,a,0.2\n")
            self.assertEqual(totals(p), {"a": 0.3})
