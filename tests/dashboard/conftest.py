from tests.api.conftest import client, queued_messages  # noqa: F401 - the API tests' fixtures, reused
