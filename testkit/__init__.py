"""Helpers shared by the tests and the benchmarks: tokens and live servers (support), order bodies (ledger),
the ledger auditor (audit), DynamoDB fault injection (faults).

A package of its own, beside tests/ and bench/, so the benchmarks need nothing from the test suite;
never packaged into a Lambda artifact (only app.py, chalicelib/ and functions/ are). It may import
chalicelib, never tests (see .importlinter)."""
