import unittest

from loader import load


class TestLoader(unittest.TestCase):
    def test_override(self):
        self.assertEqual(load({"port": 1})["port"], 1)
