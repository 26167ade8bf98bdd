import unittest

from text import slugify


class TestText(unittest.TestCase):
    def test_simple(self):
        self.assertEqual(slugify("abc"), "abc")
