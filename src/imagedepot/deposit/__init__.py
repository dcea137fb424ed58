"""Deposits to network destinations (the ``deposit_*`` workflow targets, never in the default run).

Each destination type has a sub-package: :mod:`imagedepot.deposit.xnat` (XNAT) and
:mod:`imagedepot.deposit.bia` (BioImage Archive). :mod:`imagedepot.deposit.retry` holds the bounded
retry/backoff helper the clients share, :mod:`imagedepot.deposit.verify` the download-verification
helpers.
"""
