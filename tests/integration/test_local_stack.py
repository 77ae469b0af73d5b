"""`make local` end to end: the stack in a subprocess, driven over HTTP like a client."""

from __future__ import annotations

import pytest

from devstack.demo import local_stack, run_scenario


@pytest.mark.slow
def test_local_stack_predict_cache_verdicts_promotion_rollback() -> None:
    # Given the local stack with a fast retrain loop (2 s batching window, 2 s model refresh)
    with local_stack() as stack:
        # When a client predicts, sends verdicts about a new campaign, an operator rolls back, and clients of
        # each role correct one text (every `lodbrok` command run with only the banner's exports for settings)
        report = run_scenario(stack, say=lambda line: None, promotion_timeout=240)

    # Then the second identical request was served from the cache
    before = report["predict before verdicts"]
    assert before["from_cache_first"] == [False, False]
    assert before["from_cache_again"] == [True, True]
    # And the decision is the label outside the demo's review band (0.2-0.8) and `review` inside it
    assert before["decisions"] == [
        "review" if 0.2 <= spam <= 0.8 else label
        for spam, label in zip(before["spam_probability"], before["labels"], strict=True)
    ]
    # And an explained answer names the pieces that pushed it towards its label
    why = report["why a text got its label"]
    assert why["label"] == "spam" and why["towards"]
    # And the verdicts were queued, learned and promoted as a child of the seed model
    assert report["verdicts sent"] == {"step": "verdicts sent", "status": 202, "queued": 6}
    # And a corrected text was answered by its verdict before the new version was promoted
    corrected = report["corrected text answered from the verdict memory"]
    assert (corrected["source"], corrected["label"], corrected["verdict"]) == ("verdict", "spam", "campaign-0")
    assert corrected["model_version_still_seed"]
    promoted = report["new version served"]
    assert promoted["label"] == "v2" and promoted["parent"] == "v1"
    after = report["predict after promotion"]
    assert after["from_cache"] == [False, False]  # a new model version never serves the old answers
    assert after["spam_probability"][0] > before["spam_probability"][0]
    assert after["labels"][1] == "ham"
    # And the rollback brought back the seed model's exact behaviour
    restored = report["original model served again"]
    assert restored["label"] == "v1"
    assert restored["spam_probability"] == before["spam_probability"]
    assert report["versions listed"]["count"] == 3
    # And trust decided reach: a key with the predict role may not send verdicts; a feedback client's correction
    # answered that client at once (with its id) but not another client; a reviewer's answered everyone,
    # without showing the other client the reviewer's verdict id
    feedback = report["feedback correction answers its sender only"]
    assert feedback["predict_key_sending_verdicts"] == 403 and feedback["status"] == 202
    assert (feedback["sender_source"], feedback["sender_sees_id"]) == ("verdict", "desk-1")
    assert feedback["other_source"] != "verdict"
    reviewed = report["reviewer correction answers everyone"]
    assert (reviewed["status"], reviewed["other_source"], reviewed["other_label"]) == (202, "verdict", "spam")
    assert reviewed["other_sees_id"] is None
