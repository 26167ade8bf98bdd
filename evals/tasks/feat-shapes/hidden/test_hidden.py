import math
import unittest

from shapes.circle import Circle
from shapes.square import Square


class Hidden(unittest.TestCase):
    def test_area(self):
        self.assertAlmostEqual(Circle(2).area(), math.pi * 4)
        self.assertEqual(Square(3).area(), 9)
