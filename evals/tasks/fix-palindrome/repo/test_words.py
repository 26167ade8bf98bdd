import unittest

from words import is_palindrome


class TestWords(unittest.TestCase):
    def test_plain(self):
        self.assertTrue(is_palindrome("level"))
