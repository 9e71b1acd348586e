"""`python -m worker ...` is `invoicer ...`."""

from worker.cli import main

main()
