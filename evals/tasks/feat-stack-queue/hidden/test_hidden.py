import unittest

from ds.fifo import Queue
from ds.stack import Stack


class Hidden(unittest.TestCase):
    def test_stack(self):
        s = Stack()
        s.push(1)
        s.push(2)
        self.assertEqual((s.peek(), len(s)), (2, 2))
        self.assertEqual([s.pop(), s.pop()], [2, 1])
        with self.assertRaises(IndexError):
            s.pop()

    def test_queue(self):
        q = Queue()
        q.put("a")
        q.put("b")
        self.assertEqual(len(q), 2)
        self.assertEqual([q.get(), q.get()], ["a", "b"])
        with self.assertRaises(IndexError):
            q.get()
