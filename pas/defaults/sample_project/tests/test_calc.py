import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from calc import add, mean  # noqa: E402


class CalcTest(unittest.TestCase):
    def test_add(self) -> None:
        self.assertEqual(add(2, 3), 5)

    def test_mean(self) -> None:
        self.assertEqual(mean([1, 2, 3]), 2.0)

    def test_mean_empty(self) -> None:
        with self.assertRaises(ValueError):
            mean([])
