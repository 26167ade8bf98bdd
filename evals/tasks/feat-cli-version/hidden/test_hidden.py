import contextlib
import io
import unittest

from app.cli import main
from app.version import __version__


class Hidden(unittest.TestCase):
    def test_version(self):
        self.assertEqual(__version__, "1.4.0")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            self.assertEqual(main(["--version"]), 0)
        self.assertEqual(out.getvalue().strip(), "app 1.4.0")

    def test_hello_kept(self):
        with contextlib.redirect_stdout(io.StringIO()):
            self.assertEqual(main(["hello"]), 0)
