"""The wav2lip family's own ``unetprune`` commands (``Wav2LipFamily.command_modules``)."""
