import unittest

from shop.items import Item
from shop.report import summary
from shop.store import Store


class Hidden(unittest.TestCase):
    def test_all(self):
        s = Store()
        s.add(Item("pen", 1.5, 4))
        s.add(Item("pad", 2.25, 2))
        self.assertEqual(Item("x", 2, 3).total(), 6)
        self.assertAlmostEqual(s.value(), 10.5)
        self.assertEqual(summary(s), "2 items, value 10.50")
