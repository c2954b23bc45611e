"""Test-suite configuration shared by every test module.

``@pytest.mark.bundled_core(reason="...")`` marks a test that depends on something only braidnet's
bundled MGRIT core has (an extension of XBraid's interface, or one of the bundled core's own
algorithmic choices).  Against LLNL XBraid (``braidnet.braid.BUNDLED_CORE`` False, a build with
``XBRAID_DIR=...``; see scripts/check_llnl.sh) such tests are skipped with their reason; the reason
is required, so that every skip says why.
"""
import pytest


def _bundled_core() -> bool:
    from braidnet.braid import BUNDLED_CORE
    return bool(BUNDLED_CORE)


def pytest_collection_modifyitems(config, items):
    bundled = None
    for item in items:
        mark = item.get_closest_marker("bundled_core")
        if mark is None:
            continue
        reason = mark.kwargs.get("reason") or (mark.args[0] if mark.args else None)
        if not reason:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.bundled_core needs reason=... (why the "
                                    f"test needs braidnet's bundled core)")
        if bundled is None:
            bundled = _bundled_core()
        if not bundled:
            item.add_marker(pytest.mark.skip(reason=f"bundled core only (built against LLNL XBraid): {reason}"))
