"""The speech side without Beam: manifest readers, audio decoding and
validation, the encoder registry, frame-to-token assignment, the RunInference
model handler (the one module here that imports Beam)."""
