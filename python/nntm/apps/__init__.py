"""The console apps: EncoderApp, DecoderApp, ConformanceApp."""
