"""The written tests must pass on bank.py and catch each mutant."""
import unittest

import bank


def run_written():
    suite = unittest.defaultTestLoader.loadTestsFromName("test_bank")
    res = unittest.TestResult()
    suite.run(res)
    return res


def overdraft(self, amount):
    self.balance -= amount


def no_check_deposit(self, amount):
    self.balance += amount


def wrong_sign(self, amount):
    if amount <= 0 or amount > self.balance:
        raise ValueError("bad")
    self.balance += amount


class Hidden(unittest.TestCase):
    def test_pass_on_real_code(self):
        res = run_written()
        self.assertGreaterEqual(res.testsRun, 2)
        self.assertTrue(res.wasSuccessful(), res.failures + res.errors)

    def test_kill_mutants(self):
        for attr, mutant in (("withdraw", overdraft), ("deposit", no_check_deposit), ("withdraw", wrong_sign)):
            real = getattr(bank.Account, attr)
            setattr(bank.Account, attr, mutant)
            try:
                self.assertFalse(run_written().wasSuccessful(), f"mutant {mutant.__name__} survived")
            finally:
                setattr(bank.Account, attr, real)
