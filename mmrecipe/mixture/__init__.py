"""Mixtures: recipe sources sampled into token shards, WebDataset shards, a manifest and a data card."""
