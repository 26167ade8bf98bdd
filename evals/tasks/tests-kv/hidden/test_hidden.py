"""The written tests must pass on kv.py and catch each mutant."""
import unittest

import kv


def run_written():
    suite = unittest.defaultTestLoader.loadTestsFromName("test_kv")
    res = unittest.TestResult()
    suite.run(res)
    return res


def no_strip(text):
    out = {}
    for part in text.split(";"):
        if part.strip():
            if "=" not in part:
                raise ValueError(part)
            k, v = part.split("=", 1)
            out[k] = v
    return out


def lenient(text):
    out = {}
    for part in text.split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


class Hidden(unittest.TestCase):
    def test_pass_on_real_code(self):
        res = run_written()
        self.assertGreaterEqual(res.testsRun, 2)
        self.assertTrue(res.wasSuccessful(), res.failures + res.errors)

    def test_kill_mutants(self):
        real = kv.parse_kv.__code__
        for mutant in (no_strip, lenient):
            kv.parse_kv.__code__ = mutant.__code__
            try:
                self.assertFalse(run_written().wasSuccessful(), f"mutant {mutant.__name__} survived")
            finally:
                kv.parse_kv.__code__ = real
