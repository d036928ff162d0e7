from tests.api.conftest import client, queued_messages  # noqa: F401 - the API tests' fixtures, reused

# the browser logs every 4xx the page asks for (a 401 without a key, the editor's 422s): expected
EXPECTED_4XX = "Failed to load resource: the server responded with a status of 4"


def watch(tab, problems: list[str], *, expect_4xx: bool = True) -> None:
    """Collect what a tab reports as wrong into problems: console errors (but the 4xx the page
    asked for, when expected) and uncaught page errors, with the page's address and the
    error's stack, so that a failure says where."""
    tab.on("console", lambda m: problems.append(m.text) if m.type == "error" and not (
        expect_4xx and m.text.startswith(EXPECTED_4XX)) else None)
    tab.on("pageerror", lambda e: problems.append(page_error(tab, e)))


def page_error(tab, error) -> str:
    """An uncaught page error as a failure shows it: where, and its stack."""
    return f"{error} on {tab.url}\n{error.stack}"
