import unittest

import units.length
import units.temperature


class TestUnits(unittest.TestCase):
    def test_modules(self):
        self.assertTrue(units.length.__doc__ and units.temperature.__doc__)
