"""Contemplate through a real grpcio client: every aggregator, both online
stopping policies, role prompts with a thinking budget, invalid requests and
cancellation mid-stream. Every call has a deadline.

The 135M model's answers are not the point here: the tests check the event
protocol and the bookkeeping that must hold whatever the agents write."""

import threading

import pytest

grpc = pytest.importorskip("grpc")

CALL_TIMEOUT_S = 180
QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"


def contemplate(api, stub, **fields):
    pb = api.pb
    request = pb.ContemplateRequest(
        messages=[pb.ChatMessage(role=pb.ROLE_USER, content=QUESTION)],
        **{"answer_format": pb.ANSWER_FORMAT_NUMBER, "max_tokens": 48, "seed": 11, **fields})
    return list(stub.Contemplate(request, timeout=CALL_TIMEOUT_S))


def of_kind(events, kind):
    return [getattr(e, kind) for e in events if e.WhichOneof("event") == kind]


def check_bookkeeping(pb, events, agents):
    """What every successful Contemplate stream must satisfy."""
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[-1] == "final_answer" and kinds.count("final_answer") == 1
    assert kinds.count("agent_started") == agents
    started = {s.agent for s in of_kind(events, "agent_started")}
    assert started == set(range(agents))
    finished = of_kind(events, "agent_finished")
    stopped = of_kind(events, "agent_stopped")
    # Each agent ends exactly once: finished or stopped.
    ended = [f.agent for f in finished] + [s.agent for s in stopped]
    assert sorted(ended) == list(range(agents))
    final = events[-1].final_answer
    usage = final.usage
    counted = sum(f.tokens for f in finished) + sum(s.tokens for s in stopped)
    # A stopped agent's event counts the tokens it had when stopped; usage
    # counts what the engine generated, which may include a few in flight.
    if stopped:
        assert usage.agent_tokens >= counted
    else:
        assert usage.agent_tokens == counted
    assert usage.generated_tokens == usage.agent_tokens + usage.aggregator_tokens
    assert 0.0 <= final.support <= 1.0 and 0.0 <= final.confidence <= 1.0
    assert sum(v.votes for v in final.votes) == sum(f.has_answer for f in finished)
    for vote in final.votes:
        assert len(vote.agents) == vote.votes
    if final.votes and final.aggregator != pb.AGGREGATOR_SYNTHESIS:
        # The winner is the answer with the most weight, and its agents voted for it.
        assert final.normalized_answer == final.votes[0].answer
        winners = set(final.votes[0].agents)
        assert all(f.normalized_answer == final.normalized_answer
                   for f in finished if f.agent in winners)
    assert final.seed == 11 and final.request_id
    return final, finished, stopped


@pytest.mark.parametrize("aggregator", ["MAJORITY", "CONFIDENCE", "VERIFIER", "SYNTHESIS"])
def test_each_aggregator_returns_a_final_answer(api, stub, aggregator):
    value = getattr(api.pb, "AGGREGATOR_" + aggregator)
    events = contemplate(api, stub, agents=4, aggregator=value, temperature=0.9)
    final, finished, _ = check_bookkeeping(api.pb, events, 4)
    assert final.aggregator == value
    scores = of_kind(events, "verifier_scores")
    if aggregator == "VERIFIER":
        assert len(scores) == 1
        judged = {s.agent for s in scores[0].scores}
        assert judged == {f.agent for f in finished if f.has_answer}
        assert all(0.0 <= s.p_yes <= 1.0 for s in scores[0].scores)
        # The judging pass reads each candidate's next-token logits: one
        # engine step, one token, per candidate judged.
        assert final.usage.aggregator_tokens == len(judged)
    else:
        assert not scores
    if aggregator == "SYNTHESIS":
        assert final.text.strip(), "the aggregator agent wrote nothing"
        assert final.usage.aggregator_tokens > 0
    else:
        assert final.text == ""
    if aggregator == "MAJORITY":
        assert all(v.weight == v.votes for v in final.votes)


def test_the_default_aggregator_is_majority_when_answers_are_extractable(api, stub):
    events = contemplate(api, stub, agents=3)
    final, finished, _ = check_bookkeeping(api.pb, events, 3)
    if any(f.has_answer for f in finished):
        assert final.aggregator == api.pb.AGGREGATOR_MAJORITY
    else:
        assert final.aggregator == api.pb.AGGREGATOR_SYNTHESIS


def test_consensus_stopping_aborts_the_rest_once_one_answer_holds(api, stub):
    pb = api.pb
    stopping = pb.StoppingPolicy(consensus=pb.ConsensusStopping(
        enabled=True, min_finished=1, vote_share=0.6))
    # Agents differ in length (temperature spread), so the first to finish
    # with an answer stops the others.
    events = contemplate(api, stub, agents=4, aggregator=pb.AGGREGATOR_MAJORITY,
                         temperature=1.0, temperature_spread=0.5, max_tokens=96,
                         stopping=stopping)
    final, finished, stopped = check_bookkeeping(api.pb, events, 4)
    assert all(s.reason == pb.AgentStopped.REASON_CONSENSUS for s in stopped)
    # With min_finished=1 the first agent to finish with an answer holds a
    # share of 1.0: every agent still running then is stopped.
    assert stopped, "no agent was stopped"
    assert any(f.has_answer for f in finished)
    assert final.usage.saved_tokens_estimate >= 0


def test_confidence_stopping_reports_low_confidence_agents(api, stub):
    pb = api.pb
    stopping = pb.StoppingPolicy(confidence=pb.ConfidenceStopping(
        enabled=True, warmup_agents=1, keep_top_percent=10, window=8))
    # 256 tokens: with 96, the agents below the threshold were within a token
    # of their own end when the first one finished, so whether they were
    # stopped or finished first was a race (it failed in CI once).
    events = contemplate(api, stub, agents=4, temperature=1.2, max_tokens=256,
                         stopping=stopping)
    _, _, stopped = check_bookkeeping(api.pb, events, 4)
    # Keeping the top 10% sets the threshold near the first agent's own
    # confidence, so hotter agents fall below it.
    assert stopped, "no agent was stopped"
    assert all(s.reason == pb.AgentStopped.REASON_LOW_CONFIDENCE for s in stopped)


def test_roles_and_thinking_budget_reach_the_agents(api, stub):
    roles = ["Work backwards from what is asked.", "Check each step."]
    events = contemplate(api, stub, agents=2, roles=roles, thinking_budget=16, max_tokens=64)
    check_bookkeeping(api.pb, events, 2)
    started = sorted(of_kind(events, "agent_started"), key=lambda s: s.agent)
    assert [s.role for s in started] == roles
    assert [s.seed for s in started] == [11, 12]


def test_stop_strings_end_every_agents_text(api, stub):
    """With stream_agent_text, no agent's text holds the stop string, and an
    agent cut by it finishes with FINISH_REASON_STOP_STRING."""
    pb = api.pb
    events = contemplate(api, stub, agents=3, stop=["\n"], max_tokens=64,
                         stream_agent_text=True)
    check_bookkeeping(pb, events, 3)
    texts = {}
    for delta in of_kind(events, "agent_text"):
        texts[delta.agent] = texts.get(delta.agent, "") + delta.text
    assert all("\n" not in t for t in texts.values())
    finished = of_kind(events, "agent_finished")
    cut = [f for f in finished if f.finish_reason == pb.FINISH_REASON_STOP_STRING]
    assert cut, "no agent reached a newline in 64 tokens: the test checks nothing"
    assert all(f.tokens < 64 for f in cut)


@pytest.mark.parametrize("mutate, message", [
    (lambda r, pb: r.ClearField("messages"), "messages is empty"),
    (lambda r, pb: setattr(r, "agents", 0), "agents=0"),
    (lambda r, pb: setattr(r, "agents", 9), "agents=9"),
    (lambda r, pb: setattr(r, "model", "no-such-model"), "model \"no-such-model\""),
    (lambda r, pb: r.messages[0].MergeFrom(pb.ChatMessage(content="word " * 600)),
     "max_prompt_tokens=512"),
    (lambda r, pb: setattr(r, "temperature", -0.5), "temperature"),
    (lambda r, pb: setattr(r, "max_tokens", 0), "max_tokens"),
    (lambda r, pb: r.stop.extend(["x"] * 17), "stop has 17 strings"),
], ids=["no-messages", "zero-agents", "too-many-agents", "model", "prompt-too-long",
        "temperature", "max-tokens", "stop"])
def test_invalid_contemplate_requests_get_invalid_argument(api, stub, mutate, message):
    request = api.pb.ContemplateRequest(
        messages=[api.pb.ChatMessage(role=api.pb.ROLE_USER, content=QUESTION)], agents=2)
    mutate(request, api.pb)
    with pytest.raises(grpc.RpcError) as error:
        list(stub.Contemplate(request, timeout=CALL_TIMEOUT_S))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.value.details()


def test_cancelling_a_contemplation_mid_stream_leaves_the_server_serving(api, stub):
    pb = api.pb
    request = pb.ContemplateRequest(
        messages=[pb.ChatMessage(role=pb.ROLE_USER,
                                 content="Count from 1 to 500, one number per line.")],
        agents=4, max_tokens=1500, stream_agent_text=True)
    call = stub.Contemplate(request, timeout=CALL_TIMEOUT_S)
    for event in call:
        if event.WhichOneof("event") == "agent_text":
            break
    call.cancel()
    with pytest.raises(grpc.RpcError) as error:
        list(call)
    assert error.value.code() == grpc.StatusCode.CANCELLED
    # All four agents' blocks came back: four more agents run to the end.
    events = contemplate(api, stub, agents=4)
    check_bookkeeping(api.pb, events, 4)


def test_concurrent_contemplations_each_get_their_own_answer(api, stub):
    results, errors = {}, []

    def run(i):
        try:
            results[i] = contemplate(api, stub, agents=2, max_tokens=32)
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(CALL_TIMEOUT_S)
    assert not errors, errors
    ids = {results[i][-1].final_answer.request_id for i in range(3)}
    assert len(ids) == 3
    for i in range(3):
        check_bookkeeping(api.pb, results[i], 2)
