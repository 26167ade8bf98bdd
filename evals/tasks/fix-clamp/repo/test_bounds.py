import unittest

from bounds import clamp


class TestBounds(unittest.TestCase):
    def test_inside(self):
        self.assertEqual(clamp(5, 0, 10), 5)
