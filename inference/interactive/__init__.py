"""Interactive segmentation in the browser: a session store, a FastAPI app and its page (docs/interactive.md)."""
