"""Schemathesis hooks for Jarvis: request bodies of sound are sent as raw bytes, as
`application/octet-stream` bodies are (`POST /ai/transcriptions` takes audio/*)."""

import schemathesis

schemathesis.serializer.alias(
    ["audio/wav", "audio/mpeg", "audio/flac", "audio/ogg", "audio/webm", "audio/mp4"],
    "application/octet-stream",
)
