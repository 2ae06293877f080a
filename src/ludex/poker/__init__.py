"""Poker: cards, hand evaluation, the game state machine, provably fair shuffles, PHH.

Pure: no I/O, no asyncio, no clock and no global randomness. Everything random
comes in from the caller (a deck derived from committed seeds).
"""
