import doctest
import unittest


class Hidden(unittest.TestCase):
    def test_readme(self):
        text = open("README.md").read()
        for name in ("gcd", "lcm", "is_prime"):
            self.assertRegex(text, rf">>> .*\b{name}\(")
        res = doctest.testfile("README.md", module_relative=False)
        self.assertEqual(res.failed, 0)
        self.assertGreaterEqual(res.attempted, 3)
