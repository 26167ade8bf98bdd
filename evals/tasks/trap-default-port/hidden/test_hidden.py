import unittest

import settings
from loader import load


class Hidden(unittest.TestCase):
    def test_agree_on_documented_port(self):
        self.assertIn("7000", open("README.md").read())
        self.assertEqual(settings.DEFAULT_PORT, 7000)
        import defaults

        self.assertEqual(defaults.DEFAULTS.get("port", 7000), 7000)
        self.assertEqual(load({})["port"], 7000)
        self.assertEqual(load({"port": 5})["port"], 5)
