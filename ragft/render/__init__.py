"""Renderers: a finished `Report` drawn as Markdown, HTML and plots."""
