"""Signer port: whoever holds the operator key signs for us; nobody else sees it.

A signer has an address and signs two things:

* ``sign_typed_data(data)``: EIP-712 typed data (``types``, ``primaryType``,
  ``domain``, ``message``, as :func:`ludex.chain.settlement.typed_data` builds it);
  returns the 65-byte ``r || s || v`` signature with low ``s`` and ``v`` 27 or 28,
  which is what the settlement contract accepts.
* ``sign_transaction(tx)``: an EIP-1559 transaction as eth-account takes it
  (``type`` 2, ``chainId``, ``nonce``, ``gas``, ``maxFeePerGas``,
  ``maxPriorityFeePerGas``, ``to``, ``value``, ``data``); returns the raw signed
  transaction, ready for ``eth_sendRawTransaction`` (its keccak is the tx hash).

The local implementation decrypts an Ethereum keystore
(:class:`ludex.chain.keystore.KeystoreSigner`); a remote signer (a KMS or an HSM)
implements the same three members. Both calls are async so a remote signer can do
network I/O. An implementation must never log, return or put in an exception its
key material; its ``repr`` shows the address only.
"""

from __future__ import annotations

from typing import Any, Protocol


class Signer(Protocol):
    @property
    def address(self) -> str:
        """The signing account, as a checksum address."""
        ...

    async def sign_typed_data(self, data: dict[str, Any]) -> bytes:
        """The 65-byte (r, s, v) EIP-712 signature of ``data``."""
        ...

    async def sign_transaction(self, tx: dict[str, Any]) -> bytes:
        """The raw signed transaction."""
        ...
