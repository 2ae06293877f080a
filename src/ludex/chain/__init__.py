"""On-chain settlement: contract artifacts, EIP-712 signing, deployment, the blockchain service."""
