"""The one compiled piece, optional: without a C compiler gilviz installs and samples in Python."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("gilviz._gilloop", ["gilviz/_gilloop.c"], optional=True)])
