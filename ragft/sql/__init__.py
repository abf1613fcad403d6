"""Text-to-SQL: the sandbox that runs model-written SQL, loaders, schema prompts and scoring."""
