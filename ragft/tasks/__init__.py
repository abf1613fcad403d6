"""Task kinds: a loader, a template family and metrics each."""
