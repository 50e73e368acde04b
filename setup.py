"""Metadata, packages and package data are in pyproject.toml.

This file exists for ``scrapyd-deploy``, which builds its egg with ``python setup.py bdist_egg``
and would otherwise write a setup.py of its own into the project.
"""

from setuptools import setup

setup()
