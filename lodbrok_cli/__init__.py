"""The `lodbrok` command: operators' tools, outside the runtime package the functions ship."""
