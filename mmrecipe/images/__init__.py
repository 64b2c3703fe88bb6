"""Images of a drop: safe decoding, filters, pHash near-dup index, alt-text captions, WebDataset shards."""
