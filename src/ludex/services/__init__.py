"""Services: asyncio workers built on the ports (no backend imports here)."""
