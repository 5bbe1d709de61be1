"""The `convzoo` command (tools/convzoo.py); nothing else lives here."""
