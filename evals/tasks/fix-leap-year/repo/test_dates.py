import unittest

from dates import is_leap


class TestDates(unittest.TestCase):
    def test_2024(self):
        self.assertTrue(is_leap(2024))
