"""`python -m tools.bench_peers` (what `make bench-peers` runs)."""

from tools.bench_peers.cli import main

raise SystemExit(main())
