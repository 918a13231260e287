"""Object storage: local paths and S3-compatible URIs behind one small API."""
