"""Fixtures shared by every test directory.

The fixture modules live next to what they start (``tests/authserver``,
``tests/cluster``); they are imported here so that any test can use them.
"""
