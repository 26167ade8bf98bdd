import unittest

from fizz import fizzbuzz


class Hidden(unittest.TestCase):
    def test_all(self):
        self.assertEqual([fizzbuzz(i) for i in (1, 3, 5, 15, 30, 7)],
                         ["1", "Fizz", "Buzz", "FizzBuzz", "FizzBuzz", "7"])
