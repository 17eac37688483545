"""``python -m archiver.simulator --port 8099 --recordings 300``."""

from archiver.simulator.command import main

main()
