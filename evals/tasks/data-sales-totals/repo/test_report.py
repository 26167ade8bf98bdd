import os
import unittest


class TestReport(unittest.TestCase):
    def test_data_present(self):
        self.assertTrue(os.path.exists("data/sales.csv"))
