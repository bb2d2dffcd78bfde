"""Encoders: the protocol every backend satisfies, the local engine, the remote client and the fake."""
