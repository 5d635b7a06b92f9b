"""The Wav2Lip family (talking-face generator, its lip-sync expert, LSE scoring)."""
