import unittest

from text import slugify


class Hidden(unittest.TestCase):
    def test_slug(self):
        self.assertEqual(slugify("Hello, World!"), "hello-world")
        self.assertEqual(slugify("  Many   spaces here "), "many-spaces-here")
        self.assertEqual(slugify("Already-slugged"), "already-slugged")
