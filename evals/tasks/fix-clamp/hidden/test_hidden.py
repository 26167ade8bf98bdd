import unittest

from bounds import clamp


class Hidden(unittest.TestCase):
    def test_edges(self):
        self.assertEqual(clamp(-3, 0, 10), 0)
        self.assertEqual(clamp(42, 0, 10), 10)
        self.assertEqual(clamp(7, 0, 10), 7)
