"""Serving a finished run's pipeline and collecting feedback on its answers.

- `served`: the pipeline loaded from its run folder (retriever, prompt, adapter), answering in batches.
- `app`: the HTTP API (OpenAI-compatible chat completions, feedback, review page).
- `review`: the review page's HTML.
- `server`: `ragft serve`, binding rules and the API key.

Exchanges and feedback are kept by `ragft.feedback.store`.
"""
