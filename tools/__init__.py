"""Build tools of the repository (the docs' Markdown extension); not part of the package."""
