"""Text of web pages: decoding, extraction, language ID, quality rules, PII, toxicity and scoring."""
