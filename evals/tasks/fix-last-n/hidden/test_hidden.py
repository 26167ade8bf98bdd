import unittest

from seq import last_n


class Hidden(unittest.TestCase):
    def test_values(self):
        self.assertEqual(last_n([1, 2, 3, 4], 1), [4])
        self.assertEqual(last_n([1, 2, 3], 3), [1, 2, 3])
        self.assertEqual(last_n([1, 2, 3], 0), [])
