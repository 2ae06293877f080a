"""Deploy contracts, call them and send them EIP-1559 transactions over a ChainClient.

:class:`Transactor` signs with a local account (eth-account) and waits for the
receipt; every transaction is first estimated, so a revert comes back as
:class:`~ludex.errors.ContractReverted` with the contract's decoded custom error and
nothing is sent. Its nonce is read from the node (``pending``) for every transaction:
enough for one sender at a time; the settlement service keeps its own nonce manager.
Node answers are validated at the edge (hex quantities, receipt fields).

This module must never log or put a private key in an exception.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from ludex.adapters.chain.jsonrpc import parse_quantity
from ludex.chain.abi import ContractAbi, DecodedEvent
from ludex.chain.artifacts import Artifact
from ludex.errors import ChainError, ChainRpcError, ContractReverted
from ludex.ports.chain import ChainClient

RECEIPT_POLL_S = 0.02
RECEIPT_TIMEOUT_S = 60.0
GAS_MARGIN = 1.2


def _bytes(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ChainError(f"{what}: expected 0x-hex data, got {value!r}")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise ChainError(f"{what}: expected 0x-hex data, got {value[:20]!r}...") from None


@dataclass(frozen=True, slots=True)
class Log:
    address: str
    topics: tuple[bytes, ...]
    data: bytes
    log_index: int


@dataclass(frozen=True, slots=True)
class Receipt:
    tx_hash: str
    block_number: int
    status: int
    gas_used: int
    contract_address: str | None
    logs: tuple[Log, ...]

    @classmethod
    def parse(cls, raw: Any) -> Receipt:
        if not isinstance(raw, Mapping):
            raise ChainError(f"receipt: expected an object, got {type(raw).__name__}")
        try:
            logs = tuple(
                Log(
                    to_checksum_address(entry["address"]),
                    tuple(_bytes(t, "log topic") for t in entry["topics"]),
                    _bytes(entry["data"], "log data"),
                    parse_quantity(entry["logIndex"], "logIndex"),
                )
                for entry in raw["logs"]
            )
            address = raw.get("contractAddress")
            return cls(
                tx_hash=str(raw["transactionHash"]),
                block_number=parse_quantity(raw["blockNumber"], "blockNumber"),
                status=parse_quantity(raw["status"], "status"),
                gas_used=parse_quantity(raw["gasUsed"], "gasUsed"),
                contract_address=to_checksum_address(address) if address else None,
                logs=logs,
            )
        except (KeyError, TypeError) as exc:
            raise ChainError(f"receipt: missing or malformed field {exc}") from None


class Contract:
    """A deployed contract: its address and ABI, over a chain client."""

    def __init__(self, chain: ChainClient, address: str, abi: ContractAbi) -> None:
        self.chain = chain
        self.address = to_checksum_address(address)
        self.abi = abi

    async def call(self, name: str, *args: Any, sender: str | None = None) -> tuple[Any, ...]:
        """``eth_call`` at the latest block; a revert raises ContractReverted."""
        request: dict[str, Any] = {
            "to": self.address,
            "data": "0x" + self.abi.encode_call(name, args).hex(),
        }
        if sender is not None:
            request["from"] = sender
        try:
            result = await self.chain.call("eth_call", [request, "latest"])
        except ChainRpcError as exc:
            raise self._reverted(exc) from None
        return self.abi.decode_result(name, _bytes(result, f"{name} result"))

    async def transact(self, sender: Transactor, name: str, *args: Any, value: int = 0) -> Receipt:
        data = self.abi.encode_call(name, args)
        try:
            return await sender.send(self.address, data, value=value)
        except ChainRpcError as exc:
            raise self._reverted(exc) from None

    def events(self, receipt: Receipt) -> list[DecodedEvent]:
        """The receipt's logs emitted by this contract, decoded."""
        out = []
        for entry in receipt.logs:
            if entry.address == self.address:
                event = self.abi.decode_log(
                    entry.address, entry.topics, entry.data, entry.log_index
                )
                if event is not None:
                    out.append(event)
        return out

    def _reverted(self, exc: ChainRpcError) -> ChainError:
        if exc.data is None or not exc.data.startswith("0x"):
            return exc
        error, args = self.abi.decode_error(_bytes(exc.data, "revert data"))
        return ContractReverted(error, args)


class Transactor:
    """Signs and sends EIP-1559 transactions from one local account."""

    def __init__(self, chain: ChainClient, account: LocalAccount) -> None:
        self.chain = chain
        self.account = account
        self._chain_id: int | None = None

    @property
    def address(self) -> str:
        return str(self.account.address)

    def __repr__(self) -> str:  # never the key
        return f"Transactor({self.address})"

    async def fees(self) -> tuple[int, int]:
        """(max fee, max priority fee) per gas: twice the latest base fee plus the tip."""
        block = await self.chain.call("eth_getBlockByNumber", ["latest", False])
        if not isinstance(block, Mapping) or "baseFeePerGas" not in block:
            raise ChainError("eth_getBlockByNumber: the latest block has no baseFeePerGas")
        base = parse_quantity(block["baseFeePerGas"], "baseFeePerGas")
        tip = parse_quantity(
            await self.chain.call("eth_maxPriorityFeePerGas", []), "eth_maxPriorityFeePerGas"
        )
        return 2 * base + tip, tip

    async def send(
        self, to: str | None, data: bytes, *, value: int = 0, gas: int | None = None
    ) -> Receipt:
        """Estimate, sign, send and wait for the receipt (status 1, or ChainError)."""
        if self._chain_id is None:
            self._chain_id = await self.chain.chain_id()
        request: dict[str, Any] = {"from": self.address, "data": "0x" + data.hex()}
        if to is not None:
            request["to"] = to
        if value:
            request["value"] = hex(value)
        if gas is None:
            estimate = parse_quantity(
                await self.chain.call("eth_estimateGas", [request]), "eth_estimateGas"
            )
            gas = int(estimate * GAS_MARGIN)
        nonce = parse_quantity(
            await self.chain.call("eth_getTransactionCount", [self.address, "pending"]),
            "eth_getTransactionCount",
        )
        max_fee, tip = await self.fees()
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": self._chain_id,
            "nonce": nonce,
            "gas": gas,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": tip,
            "value": value,
            "data": data,
        }
        if to is not None:
            tx["to"] = to
        signed = self.account.sign_transaction(tx)
        tx_hash = await self.chain.call(
            "eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()]
        )
        receipt = await self.wait(str(tx_hash))
        if receipt.status != 1:
            raise ChainError(f"transaction {tx_hash} failed on chain (status {receipt.status})")
        return receipt

    async def wait(self, tx_hash: str, *, timeout: float = RECEIPT_TIMEOUT_S) -> Receipt:
        deadline = time.monotonic() + timeout
        while True:
            raw = await self.chain.call("eth_getTransactionReceipt", [tx_hash])
            if raw is not None:
                return Receipt.parse(raw)
            if time.monotonic() > deadline:
                raise ChainError(f"no receipt for {tx_hash} after {timeout:.0f} s")
            await asyncio.sleep(RECEIPT_POLL_S)


async def deploy(sender: Transactor, artifact: Artifact, *args: Any) -> tuple[Contract, Receipt]:
    """Deploy ``artifact`` with constructor ``args``; the contract and its receipt."""
    abi = ContractAbi(artifact.abi)
    try:
        receipt = await sender.send(None, artifact.bytecode + abi.encode_constructor(args))
    except ChainRpcError as exc:
        if exc.data and exc.data.startswith("0x"):
            error, values = abi.decode_error(_bytes(exc.data, "revert data"))
            raise ContractReverted(error, values) from None
        raise
    if receipt.contract_address is None:
        raise ChainError(f"deploying {artifact.name}: the receipt has no contract address")
    return Contract(sender.chain, receipt.contract_address, abi), receipt


def contract_at(chain: ChainClient, address: str, artifact: Artifact) -> Contract:
    return Contract(chain, address, ContractAbi(artifact.abi))
