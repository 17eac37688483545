"""Helpers for the tests and the benchmark, in modules by job (as litestream's
``internal/testingutil``): nothing here is a test or a fixture. Fixtures live in
``tests/conftest.py`` and are thin wrappers over these; no test module imports
``tests.conftest`` or another test module (``tests/test_layout.py`` checks it).

- ``constants``: ``NOW`` (the tests' fixed clock), ``TOKEN``, ``DAY``.
- ``process``: free ports, clean environments, starting, waiting for and stopping a process by
  its PID (the S3 servers here and ``bench/`` use them).
- ``cli``: ``python -m archiver`` as a child process (``run_cli``, ``start_cli``) and what the
  tests check of it (``wait_verified``, ``no_traceback``).
- ``config``: the archiver config, in-process (``make_config``) and as a TOML file
  (``write_config``, the one writer of it).
- ``s3``: real S3 servers (moto, SeaweedFS) as processes, a recording proxy, bucket teardown.
- ``storage``: payloads, keys and configs the storage tests share.
- ``mounts``: small real file systems (tmpfs, read-only binds) for fault tests.
- ``harness``: the in-process ``Syncer`` against the simulator, opened like the CLI opens it.
- ``archive``: what a test asserts of a local archive and its journal.
- ``twilio``: a small client for the Twilio/SignalWire simulators (Basic auth, JSON answers,
  listings walked by ``next_page_uri``).
"""
