"""One folder per task: its modules, data (if task-specific), protocol and claims. Tasks are discovered from
``conf/task/<name>.yaml``; adding a task touches no harness file."""
