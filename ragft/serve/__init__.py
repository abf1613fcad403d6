"""Serving a finished run's pipeline and collecting feedback on its answers.

- `served`: the pipeline loaded from its run folder (retriever, prompt, adapter), answering in batches.
- `app`: the HTTP API (OpenAI-compatible chat completions, feedback, review page).
- `store`: exchanges and feedback in the run folder's SQLite file.
- `server`: `ragft serve`, binding rules and the API key.
"""
