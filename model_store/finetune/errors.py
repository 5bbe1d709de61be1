"""The one error the finetune command reports as bad input (exit status 2, one line)."""

from __future__ import annotations


class FinetuneError(ValueError):
    """Bad input to `finetune`: the message says what is wrong and, where it can, what to do.

    A ValueError, so `model_store.cli` reports it like its other bad input: `error: ...` on
    one line and exit status 2.
    """
