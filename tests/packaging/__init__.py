"""Tests of what the project ships: the sdist and wheel, the locks, the image, the workflows."""
