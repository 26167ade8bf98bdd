import unittest

from textutil.case import snake_to_camel
from textutil.pad import center


class Hidden(unittest.TestCase):
    def test_camel(self):
        self.assertEqual(snake_to_camel("make_it_so"), "makeItSo")
        self.assertEqual(snake_to_camel("word"), "word")

    def test_center(self):
        self.assertEqual(center("ab", 6), "**ab**")
        self.assertEqual(center("ab", 5, "-"), "-ab--")
        self.assertEqual(center("abc", 2), "abc")
