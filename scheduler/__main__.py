"""`python -m scheduler` is the same as the `zenml-scheduler` command."""

from scheduler.cli import main

main()
