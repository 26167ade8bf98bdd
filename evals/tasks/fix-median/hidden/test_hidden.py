import unittest

from stats import median


class Hidden(unittest.TestCase):
    def test_even(self):
        self.assertEqual(median([4, 1, 3, 2]), 2.5)

    def test_not_modified(self):
        v = [3, 1, 2]
        self.assertEqual(median(v), 2)
        self.assertEqual(v, [3, 1, 2])
