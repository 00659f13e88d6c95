"""The timeline a view draws: the store of what the stream said (store.py), and what part of
it is shown (view.py). Plain Python: no Textual, testable alone."""
