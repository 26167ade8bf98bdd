"""python -m benchmarks [--quick] [--json FILE] [--markdown BENCHMARKS.md] [--with MODULE] [--floors-only]"""

from benchmarks.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
