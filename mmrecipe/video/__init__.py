"""Video: safe decoding, shot detection, per-clip features, page captions and the video_clips stage."""
