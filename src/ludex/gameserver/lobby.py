"""The lobby: what the gateway's REST and GraphQL edges ask of the game server.

One facade over the table records (:class:`~ludex.gameserver.store.GameStore`), the
tables this process deals (:class:`~ludex.gameserver.host.TableHost`) and the saved
state of the others, so both edges answer the same questions the same way. Requests
are validated by the pure table; this module adds lookups and the "not found" cases.

A player's command for a table dealt by another process goes through the relay
(:mod:`ludex.gameserver.relay`) to that process, and its answer comes back as if the
table were dealt here.
"""

from __future__ import annotations

from typing import Any

from ludex.gameserver.host import Command, TableHost
from ludex.gameserver.relay import Relay
from ludex.gameserver.store import CLOSED, OPEN, GameStore, HandRow
from ludex.gameserver.table import Table, TableConfig, TableError
from ludex.poker import phh


class NotFound(TableError):
    """No such table or hand."""


class Lobby:
    def __init__(self, games: GameStore, host: TableHost, relay: Relay | None = None) -> None:
        self.games = games
        self.host = host
        self.relay = relay

    async def tables(self) -> list[dict[str, Any]]:
        """Every open table with its seats and whether a hand is in play."""
        out = []
        for config in await self.games.tables(status=OPEN):
            table = await self.host.view(config.table_id)
            seats = table.seats() if table is not None else {}
            out.append(
                {
                    "table_id": config.table_id,
                    "name": config.name,
                    "variant": config.variant,
                    "small_blind": config.small_blind,
                    "big_blind": config.big_blind,
                    "currency": config.currency,
                    "seat_count": config.seat_count,
                    "seated": len(seats),
                    "hand_in_play": table is not None and table.hand_id is not None,
                    "hands_played": 0 if table is None else table.hands_played,
                }
            )
        return out

    async def table(self, table_id: str) -> dict[str, Any]:
        """The public view of one table (seats, stacks, the hand in play, whose turn)."""
        found = await self.games.table(table_id)
        if found is None:
            raise NotFound(f"no table {table_id!r}")
        config, status = found
        table = await self.host.view(table_id)
        if table is None:
            table = Table(config)
        return {**table.public_view(), "status": status}

    async def my_cards(self, table_id: str, player: str) -> dict[str, Any] | None:
        table = await self.host.view(table_id)
        if table is None:
            raise NotFound(f"no table {table_id!r}")
        return table.private_view(player)

    async def create_table(self, config: TableConfig) -> dict[str, Any]:
        await self.games.create_table(config)
        self.host.wake()
        return await self.table(config.table_id)

    async def close_table(self, table_id: str) -> None:
        """Stop listing and dealing the table (hands in play are not cut short here)."""
        if not await self.games.set_status(table_id, CLOSED):
            raise NotFound(f"no table {table_id!r}")

    async def command(self, table_id: str, command: Command) -> dict[str, Any]:
        """Run a player's command: here when this process deals the table (no store
        read, no Redis hop), else through the relay at the process that does. The
        store is read only to tell an unknown table (404) from one dealt elsewhere;
        with no relay (or nobody answering in time) that one is ``TableUnavailable``."""
        if self.host.owns(table_id):
            return await self.host.submit(table_id, command)
        if await self.games.table(table_id) is None:
            raise NotFound(f"no table {table_id!r}")
        if self.relay is None:
            return await self.host.submit(table_id, command)
        return await self.relay.forward(table_id, command)

    async def hand(self, hand_id: str) -> HandRow:
        row = await self.games.hand(hand_id)
        if row is None:
            raise NotFound(f"no finished hand {hand_id!r}")
        return row

    async def hands(self, table_id: str, *, limit: int, before: int | None) -> list[HandRow]:
        if await self.games.table(table_id) is None:
            raise NotFound(f"no table {table_id!r}")
        return await self.games.hands(table_id, limit=limit, before=before)

    async def replay(self, hand_id: str) -> dict[str, Any]:
        """Play the stored PHH history through the engine and compare the stacks."""
        row = await self.hand(hand_id)
        result = phh.replay(phh.loads(row.history_phh))
        return {
            "hand_id": hand_id,
            "players": list(result.players),
            "starting_stacks": list(result.starting_stacks),
            "finishing_stacks": list(result.finishing_stacks),
            "payoffs": list(result.payoffs),
            "rake": result.rake,
            "complete": result.complete,
            "agrees": result.agrees,
            "pots": [
                {
                    "pot": p.pot,
                    "amount": p.amount,
                    "winners": list(p.winners),
                    "shares": list(p.shares),
                }
                for p in result.pots
            ],
        }

    async def balance(self, currency: str, player: str) -> int:
        return await self.games.balance(currency, player)
