import unittest

from units.length import km_to_miles, miles_to_km
from units.temperature import c_to_f, f_to_c


class Hidden(unittest.TestCase):
    def test_temperature(self):
        self.assertAlmostEqual(c_to_f(100), 212)
        self.assertAlmostEqual(f_to_c(32), 0)

    def test_length(self):
        self.assertAlmostEqual(miles_to_km(1), 1.609344)
        self.assertAlmostEqual(km_to_miles(1.609344), 1)
