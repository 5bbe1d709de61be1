"""`python -m service.bench_peers` (what `make bench-peers` runs)."""

from service.bench_peers.cli import main

raise SystemExit(main())
