"""The VM pages: list, detail, create, actions, migrate, console; a node's evacuation."""
