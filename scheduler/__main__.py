"""`python -m scheduler` is the same as the `zenml-scheduler` command."""

from scheduler.cli.main import main

main()
