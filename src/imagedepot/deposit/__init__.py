"""Deposits to network destinations (the ``deposit_*`` workflow targets, never in the default run).

Each destination type has a module: :mod:`imagedepot.deposit.xnat` (XNAT). :mod:`imagedepot.deposit.retry`
holds the bounded retry/backoff helper the clients share.
"""
