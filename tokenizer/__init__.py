"""The speech side without Beam: manifest readers, audio decoding and
validation, the encoder registry, frame-to-token assignment, the RunInference
model handler, and the shared I/O module and shard schemas."""
