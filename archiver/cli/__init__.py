"""The command line: the one place that wires concrete things together.

Exit codes: 0 nothing is failed, waiting, untried or unverified and the listing was complete;
1 the pass ran but work is left (failed, waiting for a retry, not yet tried, the listing
incomplete, or the pass interrupted; see ``status``); 2 bad usage or bad config (nothing
touched); 3 source or archive unreachable or down for every recording, credentials rejected, the
state volume unusable (ledger or journal), another writer holding the lock, or a bug (logged).

Every command that writes (``WRITING_COMMANDS``) holds the writer lock (``archiver.lock``) for
the life of the process; read-only ones take none.
"""

from archiver.cli.codes import EXIT_CONFIG, EXIT_FAILURES, EXIT_OK, EXIT_UNREACHABLE
from archiver.cli.main import WRITING_COMMANDS, main
from archiver.cli.reports import status_facts

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILURES",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "WRITING_COMMANDS",
    "main",
    "status_facts",
]
