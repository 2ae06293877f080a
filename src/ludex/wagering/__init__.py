"""Wagering: the seamless wallet external game providers call, with risk limits and audit.

* :mod:`~ludex.wagering.signing`: HMAC request signing (pure).
* :mod:`~ludex.wagering.models`: request and response bodies, status codes (pure).
* :mod:`~ludex.wagering.limits`: risk rules (pure).
* :mod:`~ludex.wagering.crypto`: provider secrets encrypted at rest.
* :mod:`~ludex.wagering.repository`: the SQL (players, providers, provider
  transactions and rounds, limits, audit log, raw request log).
* :mod:`~ludex.wagering.service`: :class:`WalletService` (balance, bet, win, rollback).
* :mod:`~ludex.wagering.api`: the FastAPI router (``/provider/v1/*``, ``/admin/v1/limits``).
* :mod:`~ludex.wagering.reconcile`: ledger vs provider log vs event log.

The provider-facing contract is docs/provider-api.md. Importing this package opens
nothing.
"""

from __future__ import annotations

from ludex.wagering.models import Status, WalletResponse
from ludex.wagering.service import WalletService

__all__ = ["Status", "WalletResponse", "WalletService"]
