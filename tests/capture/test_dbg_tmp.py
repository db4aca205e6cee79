from freshcache.capture import reads
from tests.capture.test_stateful import CACHED, READS, WRITES, CaptureMachine


def test_x(memory_store, monkeypatch):
    monkeypatch.setattr(reads, "_order_aliases", lambda c, t: set())
    CaptureMachine()
    print(CACHED["slice_by_joined"].outcome(3))
    WRITES["post_save"][1](4, "a", 1)
    print(CACHED["slice_by_joined"].outcome(3))
    print(READS["slice_by_joined"][1](3))
