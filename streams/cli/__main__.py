"""`python -m streams.cli`: what the supervisor runs in each stage's child process."""

from streams.cli import main

main()
