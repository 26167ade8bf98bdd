import unittest

from words import is_palindrome


class Hidden(unittest.TestCase):
    def test_loose(self):
        self.assertTrue(is_palindrome("A man, a plan, a canal: Panama"))
        self.assertTrue(is_palindrome("No lemon, no melon"))
        self.assertFalse(is_palindrome("Not one"))
