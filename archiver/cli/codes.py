"""Exit codes: a pipeline acts on them (README "Exit codes")."""

EXIT_OK, EXIT_FAILURES, EXIT_CONFIG, EXIT_UNREACHABLE = 0, 1, 2, 3
