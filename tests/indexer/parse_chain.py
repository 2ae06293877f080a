"""A small generated chain for the extraction tests: every kind of thing the indexer reads.

Not a test module. :func:`generate` runs on an anvil of the caller's own (so block
numbers are predictable and nothing else mines on it): native transfers (EIP-1559,
legacy and EIP-2930), TestToken mint and transfer, TestNFT mint and transfer, TestMulti
single and batch transfers, a Ludex deployment with a native and a token deposit, and
one block holding several transactions (automine off, then one ``evm_mine``). It
returns the node's raw answers for every block with what the test did, for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from eth_account import Account

from ludex.adapters.chain.jsonrpc import JsonRpcChain
from ludex.chain.abi import ContractAbi
from ludex.chain.artifacts import load_artifact
from ludex.chain.contracts import Contract, Transactor, deploy
from tests.chain.vault_env import ETHER, funded

ZERO = "0x" + "00" * 20


@dataclass
class Generated:
    url: str
    chain_id: int
    head: int
    raw: dict[int, tuple[dict[str, Any], list[dict[str, Any]]]] = field(default_factory=dict)
    # (standard, token, operator, from, to, token id, amount) in chain order
    transfers: list[tuple[str, str, str | None, str, str, int | None, int]] = field(
        default_factory=list
    )
    contracts: dict[str, str] = field(default_factory=dict)  # name -> lower-case address
    creators: dict[str, str] = field(default_factory=dict)  # name -> lower-case deployer
    tx: dict[str, str] = field(default_factory=dict)  # label -> tx hash
    blocks: dict[str, int] = field(default_factory=dict)  # label -> block number


def rpc(url: str, method: str, params: list[Any]) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    answer = httpx.post(url, json=body, timeout=10).json()
    assert "error" not in answer, answer
    return answer["result"]


async def _raw_send(chain: JsonRpcChain, sender: Transactor, tx: dict[str, Any]) -> str:
    """Sign ``tx`` (nonce and chain id filled in) and send it without waiting."""
    nonce = int(await chain.call("eth_getTransactionCount", [sender.address, "pending"]), 16)
    signed = sender.account.sign_transaction({"nonce": nonce, "chainId": 31337, **tx})
    return str(
        await chain.call("eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()])
    )


def _call(contract: Contract, name: str, *args: Any) -> bytes:
    return contract.abi.encode_call(name, args)


async def generate(url: str) -> Generated:
    chain = JsonRpcChain(url)
    await chain.start()
    try:
        return await _generate(chain, url)
    finally:
        await chain.close()


async def _generate(chain: JsonRpcChain, url: str) -> Generated:
    out = Generated(url, await chain.chain_id(), 0)
    alice, bob, owner = await funded(chain), await funded(chain), await funded(chain)
    a, b = alice.address.lower(), bob.address.lower()
    carol = Account.create().address

    def note(label: str, receipt: Any) -> None:
        out.tx[label] = receipt.tx_hash.lower()
        out.blocks[label] = receipt.block_number

    note("native", await alice.send(bob.address, b"", value=ETHER))
    legacy = await _raw_send(
        chain, alice, {"to": carol, "value": 5, "gas": 21000, "gasPrice": 3 * 10**9}
    )
    note("legacy", await alice.wait(legacy))
    access = await _raw_send(
        chain,
        alice,
        {"to": carol, "value": 6, "gas": 30000, "gasPrice": 3 * 10**9, "accessList": []},
    )
    note("eip2930", await alice.wait(access))

    token, receipt = await deploy(owner, load_artifact("TestToken"), "Test", "TST")
    note("token_deploy", receipt)
    t = token.address.lower()
    out.contracts["TestToken"], out.creators["TestToken"] = t, owner.address.lower()
    note("token_mint", await token.transact(alice, "mint", alice.address, 1000))
    out.transfers.append(("erc20", t, None, ZERO, a, None, 1000))
    note("token_transfer", await token.transact(alice, "transfer", bob.address, 300))
    out.transfers.append(("erc20", t, None, a, b, None, 300))

    nft, receipt = await deploy(owner, load_artifact("TestNFT"), "Nft", "NFT")
    note("nft_deploy", receipt)
    n = nft.address.lower()
    out.contracts["TestNFT"], out.creators["TestNFT"] = n, owner.address.lower()
    note("nft_mint", await nft.transact(alice, "mint", alice.address, 7))
    out.transfers.append(("erc721", n, None, ZERO, a, 7, 1))
    note("nft_transfer", await nft.transact(alice, "transferFrom", alice.address, bob.address, 7))
    out.transfers.append(("erc721", n, None, a, b, 7, 1))

    multi, receipt = await deploy(owner, load_artifact("TestMulti"))
    note("multi_deploy", receipt)
    m = multi.address.lower()
    out.contracts["TestMulti"], out.creators["TestMulti"] = m, owner.address.lower()
    note("multi_mint", await multi.transact(alice, "mint", alice.address, 1, 50))
    out.transfers.append(("erc1155", m, a, ZERO, a, 1, 50))
    note(
        "multi_single",
        await multi.transact(alice, "safeTransferFrom", alice.address, bob.address, 1, 20, b""),
    )
    out.transfers.append(("erc1155", m, a, a, b, 1, 20))
    note(
        "multi_mint_batch", await multi.transact(alice, "mintBatch", alice.address, [2, 3], [5, 6])
    )
    out.transfers += [("erc1155", m, a, ZERO, a, 2, 5), ("erc1155", m, a, ZERO, a, 3, 6)]
    note(
        "multi_batch",
        await multi.transact(
            alice, "safeBatchTransferFrom", alice.address, bob.address, [2, 3], [1, 2], b""
        ),
    )
    out.transfers += [("erc1155", m, a, a, b, 2, 1), ("erc1155", m, a, a, b, 3, 2)]

    ludex, receipt = await deploy(owner, load_artifact("Ludex"), owner.address)
    note("ludex_deploy", receipt)
    lx = ludex.address.lower()
    out.contracts["Ludex"], out.creators["Ludex"] = lx, owner.address.lower()
    note("deposit", await ludex.transact(alice, "deposit", value=2 * ETHER))
    note("approve", await token.transact(alice, "approve", ludex.address, 100))
    note("deposit_token", await ludex.transact(alice, "depositToken", token.address, 100))
    out.transfers.append(("erc20", t, None, a, lx, None, 100))

    # One block, several transactions from different senders: logs across receipts.
    await chain.call("evm_setAutomine", [False])
    try:
        fee = {"maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9, "gas": 300_000}
        hashes = [
            await _raw_send(
                chain, alice, {"to": token.address, "data": _call(token, "transfer", b, 1), **fee}
            ),
            await _raw_send(
                chain, bob, {"to": nft.address, "data": _call(nft, "mint", b, 8), **fee}
            ),
            await _raw_send(
                chain,
                owner,
                {"to": multi.address, "data": _call(multi, "mintBatch", b, [4], [9]), **fee},
            ),
            await _raw_send(chain, owner, {"to": carol, "value": 1, **fee}),
        ]
        await chain.call("evm_mine", [])
    finally:
        await chain.call("evm_setAutomine", [True])
    receipts = [await alice.wait(h) for h in hashes]
    assert len({r.block_number for r in receipts}) == 1, "the batch did not land in one block"
    for label, r in zip(("multi_a", "multi_b", "multi_c", "multi_d"), receipts, strict=True):
        note(label, r)
    out.transfers += [
        ("erc20", t, None, a, b, None, 1),
        ("erc721", n, None, ZERO, b, 8, 1),
        ("erc1155", m, owner.address.lower(), ZERO, b, 4, 9),
    ]

    out.head = await chain.block_number()
    for number in range(out.head + 1):  # genesis too
        out.raw[number] = (
            rpc(url, "eth_getBlockByNumber", [hex(number), True]),
            rpc(url, "eth_getBlockReceipts", [hex(number)]),
        )
    return out


# --- a chain for the trace and balance tests (added for ludex.indexer.traces / balances) --


@dataclass
class TracedChain:
    """What :func:`generate_traced` did: blocks ``start + 1 .. head`` hold it all."""

    url: str
    start: int  # the last block before the tested ones (balances set by anvil before it)
    head: int
    accounts: dict[str, str] = field(default_factory=dict)  # name -> lower-case address
    tokens: dict[str, str] = field(default_factory=dict)  # TestToken / TestNFT / TestMulti
    nft_ids: list[int] = field(default_factory=list)
    multi_ids: list[int] = field(default_factory=list)
    internal_creations: dict[str, str] = field(default_factory=dict)  # address -> creator
    tx: dict[str, str] = field(default_factory=dict)  # label -> tx hash
    blocks: dict[str, int] = field(default_factory=dict)  # label -> block number


async def generate_traced(url: str) -> TracedChain:
    """On an anvil of the caller's own: TraceProbe internal value transfers, an internal
    CREATE and CREATE2, a reverted internal call with value (and a creation inside it),
    self-destructs (of a contract created in the same transaction, and of an older one),
    a failed transaction with value, a creation with value, and ERC-20 / 721 / 1155
    transfers, mints and burns; one block holds several of them."""
    chain = JsonRpcChain(url)
    await chain.start()
    try:
        return await _generate_traced(chain, url)
    finally:
        await chain.close()


async def _generate_traced(chain: JsonRpcChain, url: str) -> TracedChain:
    alice, bob, owner = await funded(chain), await funded(chain), await funded(chain)
    carol = Account.create().address
    await chain.call("evm_mine", [])  # anvil_setBalance lands before the tested blocks
    out = TracedChain(url, await chain.block_number(), 0)
    out.accounts = {
        "alice": alice.address.lower(),
        "bob": bob.address.lower(),
        "owner": owner.address.lower(),
        "carol": carol.lower(),
    }

    def note(label: str, receipt: Any) -> Any:
        out.tx[label] = receipt.tx_hash.lower()
        out.blocks[label] = receipt.block_number
        return receipt

    probe, receipt = await deploy(owner, load_artifact("TraceProbe"))
    note("probe_deploy", receipt)
    p = probe.address.lower()
    out.accounts["probe"] = p
    note("fund_probe", await alice.send(probe.address, b"", value=ETHER))
    note("split", await probe.transact(alice, "split", [carol, bob.address], [3, 4], value=10))
    spawned = note("spawn", await probe.transact(alice, "spawn", 5, b"\x07" * 32, value=10))
    children = [str(e.args["child"]).lower() for e in probe.events(spawned)]
    assert len(children) == 2
    for child in children:
        out.internal_creations[child] = p
    out.accounts["child_create"], out.accounts["child_create2"] = children

    note("try_and_pay", await probe.transact(alice, "tryAndPay", carol, 8, 2, value=10))
    [killed] = await probe.call("spawnAndKill", bob.address, sender=alice.address)
    out.internal_creations[str(killed).lower()] = p
    out.accounts["killed"] = str(killed).lower()
    note("spawn_and_kill", await probe.transact(alice, "spawnAndKill", bob.address, value=7))
    older = Contract(chain, children[0], ContractAbi(load_artifact("TraceChild").abi))
    note("boom", await older.transact(owner, "boom", carol))  # an older contract: 5 wei out
    fee = {"maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9}
    failed = await _raw_send(
        chain,
        alice,
        {"to": probe.address, "data": _call(probe, "fail"), "value": 3, "gas": 100_000, **fee},
    )
    note("failed", await alice.wait(failed))
    receipt = await owner.send(None, load_artifact("TraceChild").bytecode, value=11)
    note("endowed_deploy", receipt)
    assert receipt.contract_address is not None
    out.accounts["endowed"] = receipt.contract_address.lower()

    token, _ = await deploy(owner, load_artifact("TestToken"), "Test", "TST")
    nft, _ = await deploy(owner, load_artifact("TestNFT"), "Nft", "NFT")
    multi, _ = await deploy(owner, load_artifact("TestMulti"))
    out.tokens = {
        "TestToken": token.address.lower(),
        "TestNFT": nft.address.lower(),
        "TestMulti": multi.address.lower(),
    }
    out.nft_ids, out.multi_ids = [7, 8], [1, 2, 3]
    await token.transact(alice, "mint", alice.address, 1000)
    await token.transact(alice, "transfer", bob.address, 300)
    await token.transact(alice, "transfer", alice.address, 5)  # to itself: no change
    await nft.transact(alice, "mint", alice.address, 7)
    await nft.transact(alice, "transferFrom", alice.address, bob.address, 7)
    await token.transact(bob, "transfer", ZERO, 10)  # a burn: only bob's row
    await nft.transact(bob, "burn", 7)
    await multi.transact(alice, "mint", alice.address, 1, 50)
    await multi.transact(alice, "safeTransferFrom", alice.address, bob.address, 1, 20, b"")
    await multi.transact(alice, "mintBatch", alice.address, [2, 3], [5, 6])
    await multi.transact(
        alice, "safeBatchTransferFrom", alice.address, bob.address, [2, 3], [1, 2], b""
    )

    # One block: internal transfers, token moves, a failed call and a plain transfer.
    await chain.call("evm_setAutomine", [False])
    try:
        fee = {**fee, "gas": 400_000}
        hashes = [
            await _raw_send(
                chain,
                alice,
                {
                    "to": probe.address,
                    "data": _call(probe, "split", [carol, owner.address], [1, 2]),
                    "value": 5,
                    **fee,
                },
            ),
            await _raw_send(
                chain, bob, {"to": token.address, "data": _call(token, "transfer", p, 30), **fee}
            ),
            await _raw_send(
                chain, bob, {"to": nft.address, "data": _call(nft, "mint", carol, 8), **fee}
            ),
            await _raw_send(
                chain,
                owner,
                {"to": multi.address, "data": _call(multi, "mintBatch", carol, [1], [4]), **fee},
            ),
            await _raw_send(
                chain, owner, {"to": probe.address, "data": _call(probe, "fail"), "value": 1, **fee}
            ),
            await _raw_send(chain, owner, {"to": carol, "value": 9, **fee}),
            await _raw_send(
                chain,
                alice,
                {
                    "to": probe.address,
                    "data": _call(probe, "spawn", 1, b"\x08" * 32),
                    "value": 2,
                    **fee,
                },
            ),
        ]
        await chain.call("evm_mine", [])
    finally:
        await chain.call("evm_setAutomine", [True])
    receipts = [await alice.wait(h) for h in hashes]
    assert len({r.block_number for r in receipts}) == 1, "the batch did not land in one block"
    note("batch_failed", receipts[4])
    spawned_again = receipts[6]
    for e in probe.events(spawned_again):
        out.internal_creations[str(e.args["child"]).lower()] = p
    out.head = await chain.block_number()
    return out
