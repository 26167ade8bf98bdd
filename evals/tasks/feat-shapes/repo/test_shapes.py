import unittest

from shapes.circle import Circle
from shapes.square import Square


class TestShapes(unittest.TestCase):
    def test_construct(self):
        self.assertEqual(Circle(2).r, 2)
        self.assertEqual(Square(3).side, 3)
