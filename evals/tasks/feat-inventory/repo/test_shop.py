import unittest

from shop.items import Item
from shop.store import Store


class TestShop(unittest.TestCase):
    def test_make(self):
        self.assertEqual(Item("a", 1.0, 2).qty, 2)
        self.assertEqual(Store().items, [])
