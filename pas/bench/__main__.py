"""python -m pas.bench [--quick] [--json FILE] [--markdown BENCHMARKS.md] [--with MODULE]"""

from pas.bench.run import main

if __name__ == "__main__":
    raise SystemExit(main())
