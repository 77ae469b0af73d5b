"""The learning loop: queued verdicts taken in, screened, held for a reviewer or learned into a candidate
that the gate promotes or rejects. Runs in the retrain function (and `lodbrok finetune`).
"""
