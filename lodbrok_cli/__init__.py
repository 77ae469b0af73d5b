"""The `lodbrok` command: operators' tools, outside the runtime package the functions ship.

`model_commands` work on bundle files offline (train, evaluate, predict, finetune, inspect); `stack_commands`
operate a deployed stack (publish, versions, rollback, clients, memory, held verdicts, candidates). `main`
builds the parser from both and dispatches.
"""
