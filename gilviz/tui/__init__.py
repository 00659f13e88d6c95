"""The live view (Textual). The only part of gilviz that imports textual.

model.py, view.py and sources.py import no Textual and can be used and tested alone.
"""


def make_app(source, **options):
    from .app import make_app as _make_app

    return _make_app(source, **options)
