"""A two-layer network with hand-written backward passes (an example project for gradverify)."""
