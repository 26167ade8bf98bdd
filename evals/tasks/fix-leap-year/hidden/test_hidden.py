import unittest

from dates import is_leap


class Hidden(unittest.TestCase):
    def test_rule(self):
        self.assertTrue(is_leap(2000))
        self.assertFalse(is_leap(1900))
        self.assertFalse(is_leap(2023))
        self.assertTrue(is_leap(1996))
