"""The game server: poker tables as actors owned through leases, their timers, and bots."""
