import unittest

from ds.fifo import Queue
from ds.stack import Stack


class TestDs(unittest.TestCase):
    def test_make(self):
        Stack()
        Queue()
