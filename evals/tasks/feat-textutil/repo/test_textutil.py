import unittest

import textutil.case
import textutil.pad


class TestTextutil(unittest.TestCase):
    def test_import(self):
        self.assertIsNotNone(textutil.case and textutil.pad)
