"""Dual encoder from a multilingual LLM with audio tokens: model, loss, data
loading from shards, the training loop and evaluation."""
