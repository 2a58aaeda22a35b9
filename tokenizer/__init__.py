"""The speech side without Beam: manifest readers, audio decoding and
validation, the encoder registry, the model that turns audio into tokens, and
frame-to-token assignment."""
