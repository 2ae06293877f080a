"""The gateway: one ASGI app (REST now; GraphQL and WebSocket come with the gateway issue)."""
