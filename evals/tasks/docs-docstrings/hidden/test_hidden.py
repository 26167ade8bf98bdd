import unittest

import util


class Hidden(unittest.TestCase):
    def test_docs(self):
        self.assertTrue((util.__doc__ or "").strip())
        for name in ("chunk", "flatten", "unique"):
            doc = (getattr(util, name).__doc__ or "").strip()
            self.assertGreater(len(doc), 10, name)

    def test_behaviour_kept(self):
        self.assertEqual(util.chunk([1, 2, 3], 2), [[1, 2], [3]])
        self.assertEqual(util.unique([2, 1, 2]), [2, 1])
