import unittest

from kv import parse_kv


class TestKv(unittest.TestCase):
    def test_parse(self):
        self.assertEqual(parse_kv("a=1; b = two"), {"a": "1", "b": "two"})
        self.assertEqual(parse_kv(""), {})

    def test_missing_equals(self):
        with self.assertRaises(ValueError):
            parse_kv("a=1; oops")
