import unittest

from counter import word_counts


class Hidden(unittest.TestCase):
    def test_counts(self):
        self.assertEqual(word_counts("The cat\tthe  DOG\n"), {"the": 2, "cat": 1, "dog": 1})
        self.assertEqual(word_counts("   "), {})
