"""Audio: decoding web audio payloads, speech detection, Whisper transcription, transcript filters and WER."""
