import unittest

from bank import Account


class TestAccount(unittest.TestCase):
    def test_deposit_withdraw(self):
        a = Account(10)
        a.deposit(5)
        a.withdraw(3)
        self.assertEqual(a.balance, 12)

    def test_overdraft(self):
        with self.assertRaises(ValueError):
            Account(1).withdraw(2)

    def test_negative(self):
        with self.assertRaises(ValueError):
            Account().deposit(-1)
        with self.assertRaises(ValueError):
            Account(5).withdraw(-1)
