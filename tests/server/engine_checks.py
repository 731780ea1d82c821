"""What the API tests read of a running server's engine through its
metrics endpoint: one metric's value, and the check every fault and overload
test ends with, that the engine holds nothing any more."""

import time

import conclave_api

IDLE_TIMEOUT_S = 30
# Gauges that are all 0 when no call is queued, waiting or running and no
# KV block is held.
IDLE_GAUGES = ("conclave_num_requests_running", "conclave_num_requests_waiting",
               "conclave_num_requests_queued", "conclave_num_sequences_running",
               "conclave_num_sequences_waiting", "conclave_kv_blocks_used")


def metric(server, name, **labels):
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(value for n, l, value in conclave_api.read_metrics(server.metrics_address)
               if n == name and all(l.get(k) == v for k, v in labels.items()))


def engine_state(server):
    """The IDLE_GAUGES, from one scrape."""
    samples = conclave_api.read_metrics(server.metrics_address)
    return {name: sum(v for n, _, v in samples if n == name) for name in IDLE_GAUGES}


def assert_idle(server, timeout=IDLE_TIMEOUT_S):
    """Waits (bounded) until the engine holds nothing, then asserts it (the
    gauges come from the step loop's last published snapshot)."""
    deadline = time.monotonic() + timeout
    state = engine_state(server)
    while any(state.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
        state = engine_state(server)
    assert not any(state.values()), f"engine not idle after {timeout} s: {state}"
