import unittest

from util import chunk, flatten, unique


class TestUtil(unittest.TestCase):
    def test_behaviour(self):
        self.assertEqual(chunk([1, 2, 3], 2), [[1, 2], [3]])
        self.assertEqual(flatten([[1], [2, 3]]), [1, 2, 3])
        self.assertEqual(unique([1, 1, 2]), [1, 2])
