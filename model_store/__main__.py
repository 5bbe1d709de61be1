"""`python -m model_store`: list, info, pull, import, verify."""

from model_store.cli import main

raise SystemExit(main())
