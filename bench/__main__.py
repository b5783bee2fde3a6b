"""`python -m bench` (what `make bench` runs): see bench/harness.py and bench/README.md."""

from bench.harness import main

main()
