import unittest

from app.cli import main


class TestCli(unittest.TestCase):
    def test_hello(self):
        self.assertEqual(main(["hello"]), 0)
