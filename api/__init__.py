"""The HTTP API: a FastAPI app factory (`create_app`) and the server runners (`server`)."""
