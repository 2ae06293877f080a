"""Deploying the Ludex contract with the operator's Signer, and a local devnet.

:func:`deploy_ludex` deploys ``Ludex`` from a :class:`~ludex.ports.signer.Signer`'s account,
appoints the operator (``setOperator``) and, when another owner is named, starts the
two-step ownership transfer (the new owner calls ``acceptOwnership``).
:func:`setup_devnet` prepares a running anvil for local play: an operator keystore
(kept between runs), a fresh Ludex and TestToken, and funded test players.

Every transaction is estimated first, so a revert comes back as
:class:`~ludex.errors.ContractReverted` and nothing is sent. These functions never log
or return a key: test players' keys go to a file of mode 0600, the operator's stays in
its keystore.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from eth_account import Account
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from ludex.adapters.chain.anvil import set_balance
from ludex.adapters.chain.jsonrpc import parse_quantity
from ludex.chain.abi import ContractAbi
from ludex.chain.artifacts import load_artifact
from ludex.chain.contracts import GAS_MARGIN, Receipt
from ludex.chain.keystore import DEVNET_SCRYPT_N, KeystoreSigner, new_keystore
from ludex.errors import ChainError, ChainRpcError, ContractReverted
from ludex.ports.chain import ChainClient
from ludex.ports.signer import Signer

ETHER: Final = 10**18
RECEIPT_TIMEOUT_S: Final = 120.0


async def send_signed(
    chain: ChainClient,
    signer: Signer,
    to: str | None,
    data: bytes,
    *,
    abi: ContractAbi | None = None,
    value: int = 0,
) -> Receipt:
    """Estimate, sign with ``signer``, send and wait for a successful receipt."""
    request: dict[str, Any] = {"from": signer.address, "data": "0x" + data.hex()}
    if to is not None:
        request["to"] = to
    if value:
        request["value"] = hex(value)
    try:
        estimate = parse_quantity(await chain.call("eth_estimateGas", [request]), "eth_estimateGas")
    except ChainRpcError as exc:
        if abi is not None and exc.data and exc.data.startswith("0x"):
            error, args = abi.decode_error(bytes.fromhex(exc.data[2:]))
            raise ContractReverted(error, args) from None
        raise
    block = await chain.call("eth_getBlockByNumber", ["latest", False])
    base = parse_quantity(block["baseFeePerGas"], "baseFeePerGas")
    tip = parse_quantity(
        await chain.call("eth_maxPriorityFeePerGas", []), "eth_maxPriorityFeePerGas"
    )
    nonce = parse_quantity(
        await chain.call("eth_getTransactionCount", [signer.address, "pending"]),
        "eth_getTransactionCount",
    )
    tx: dict[str, Any] = {
        "type": 2,
        "chainId": await chain.chain_id(),
        "nonce": nonce,
        "gas": int(estimate * GAS_MARGIN),
        "maxFeePerGas": 2 * base + tip,
        "maxPriorityFeePerGas": tip,
        "value": value,
        "data": data,
    }
    if to is not None:
        tx["to"] = to
    raw = await signer.sign_transaction(tx)
    tx_hash = "0x" + keccak(raw).hex()
    await chain.call("eth_sendRawTransaction", ["0x" + raw.hex()])
    deadline = time.monotonic() + RECEIPT_TIMEOUT_S
    while (answer := await chain.call("eth_getTransactionReceipt", [tx_hash])) is None:
        if time.monotonic() > deadline:
            raise ChainError(f"no receipt for {tx_hash} after {RECEIPT_TIMEOUT_S:.0f} s")
        await asyncio.sleep(0.05)
    receipt = Receipt.parse(answer)
    if receipt.status != 1:
        raise ChainError(f"transaction {tx_hash} failed on chain (status {receipt.status})")
    return receipt


@dataclass(frozen=True, slots=True)
class Deployed:
    """What ``ludex chain deploy`` prints."""

    contract: str
    chain_id: int
    tx_hash: str
    block_number: int
    gas_used: int
    deployer: str
    owner: str
    operator: str
    pending_owner: str | None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


async def deploy_ludex(
    chain: ChainClient,
    signer: Signer,
    *,
    owner: str | None = None,
    operator: str | None = None,
) -> Deployed:
    """Deploy Ludex from ``signer``, appoint ``operator`` (default: the signer), and hand
    ownership to ``owner`` if it is another account (it must accept)."""
    artifact = load_artifact("Ludex")
    abi = ContractAbi(artifact.abi)
    deployer = signer.address
    operator = to_checksum_address(operator) if operator else deployer
    new_owner = to_checksum_address(owner) if owner else deployer
    receipt = await send_signed(
        chain, signer, None, artifact.bytecode + abi.encode_constructor([deployer]), abi=abi
    )
    if receipt.contract_address is None:
        raise ChainError("deploying Ludex: the receipt has no contract address")
    address = receipt.contract_address
    await send_signed(
        chain, signer, address, abi.encode_call("setOperator", [operator, True]), abi=abi
    )
    pending = None
    if new_owner != deployer:
        await send_signed(
            chain, signer, address, abi.encode_call("transferOwnership", [new_owner]), abi=abi
        )
        pending = new_owner
    return Deployed(
        contract=address,
        chain_id=await chain.chain_id(),
        tx_hash=receipt.tx_hash,
        block_number=receipt.block_number,
        gas_used=receipt.gas_used,
        deployer=deployer,
        owner=deployer if pending else new_owner,
        operator=operator,
        pending_owner=pending,
    )


def devnet_operator(directory: Path) -> tuple[KeystoreSigner, Path, Path]:
    """The devnet operator: its keystore and password file in ``directory`` (made once)."""
    keystore = directory / "operator.json"
    password_file = directory / "operator.password"
    if not keystore.exists():
        directory.mkdir(parents=True, exist_ok=True)
        password = secrets.token_urlsafe(24)
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(password + "\n")
        new_keystore(keystore, password, scrypt_n=DEVNET_SCRYPT_N)
    password = password_file.read_text(encoding="utf-8").rstrip("\r\n")
    return KeystoreSigner.from_file(keystore, password), keystore, password_file


async def setup_devnet(
    chain: ChainClient, directory: Path, *, players: int, rpc_url: str
) -> dict[str, Any]:
    """Deploy Ludex and a TestToken on a running anvil and fund ``players`` test players.

    The operator (also the owner here) is funded with ``anvil_setBalance``; each player
    gets 100 ether and 1,000,000 test tokens. Players' keys go to ``players.json``
    (mode 0600) in ``directory``. Returns the summary ``ludex chain devnet`` prints.
    """
    signer, keystore, password_file = devnet_operator(directory)
    await set_balance(chain, signer.address, 10_000 * ETHER)
    deployed = await deploy_ludex(chain, signer)
    token_artifact = load_artifact("TestToken")
    token_abi = ContractAbi(token_artifact.abi)
    token_receipt = await send_signed(
        chain,
        signer,
        None,
        token_artifact.bytecode + token_abi.encode_constructor(["Test Token", "TST"]),
        abi=token_abi,
    )
    token = token_receipt.contract_address
    assert token is not None
    accounts = [Account.create() for _ in range(players)]
    for account in accounts:
        await set_balance(chain, account.address, 100 * ETHER)
        await send_signed(
            chain,
            signer,
            token,
            token_abi.encode_call("mint", [account.address, 1_000_000 * ETHER]),
            abi=token_abi,
        )
    players_file = directory / "players.json"
    fd = os.open(players_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(
            [{"address": a.address, "private_key": "0x" + bytes(a.key).hex()} for a in accounts],
            out,
            indent=2,
        )
    return {
        "rpc": rpc_url,
        "chain_id": deployed.chain_id,
        "contract": deployed.contract,
        "deploy_tx": deployed.tx_hash,
        "token": token,
        "operator": signer.address,
        "owner": deployed.owner,
        "players": [a.address for a in accounts],
        "players_file": str(players_file),
        "keystore": str(keystore),
        "password_file": str(password_file),
        "env": [
            f"LUDEX_CHAIN_URL={rpc_url}",
            f"LUDEX_CHAIN_CONTRACT={deployed.contract}",
            f"LUDEX_OPERATOR_KEYSTORE={keystore}",
            f"LUDEX_OPERATOR_PASSWORD_FILE={password_file}",
        ],
    }
