"""Audio and video files: read, check, resample, write, mux."""
