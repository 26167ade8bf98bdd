import unittest

from counter import word_counts


class TestCounter(unittest.TestCase):
    def test_one(self):
        self.assertEqual(word_counts("a"), {"a": 1})
