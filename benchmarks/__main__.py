"""`python -m benchmarks --quick|--full`: the whole suite (see benchmarks/suite.py)."""

from benchmarks.suite import main

raise SystemExit(main())
