"""Where Colab installs the package from: one constant for every chapter's install cell.

Every notebook's second cell installs the package when it is missing (on
Colab, or any fresh kernel) and does nothing when it is already importable.
Its text is generated from :data:`INSTALL_SPEC` by
``.ci/sync_install_cells.py``; ``tests/test_install_cell.py`` checks that
every notebook holds exactly :func:`install_cell_source`, and that
``_config.yml``'s ``repository.url`` is :data:`REPOSITORY`.

The version installed is the release tag of this version of the package
(``v`` + ``__version__``), so a chapter read on Colab runs the code it was
written and executed with, not whatever the main branch holds that day.
A release must therefore push that tag.

Taught in: every chapter's install cell (the book's introduction explains it).
"""

from __future__ import annotations

from . import __version__

__all__ = ["INSTALL_SPEC", "REPOSITORY", "TAG", "install_cell_source"]

#: The book's and the package's repository (``_config.yml`` ``repository.url`` must agree).
REPOSITORY = "https://github.com/metalearn-nlp/metalearn-nlp"
#: The git tag of this version.
TAG = f"v{__version__}"
#: What ``pip install`` gets on Colab: this version's tag of the repository.
INSTALL_SPEC = f"metalearn-nlp @ git+{REPOSITORY}@{TAG}"


def install_cell_source(spec: str = INSTALL_SPEC) -> str:
    """The source of every notebook's install cell (tagged ``hide-output``).

    Arguments:
        spec: the pip requirement to install (default :data:`INSTALL_SPEC`).

    Example:
        >>> "except ModuleNotFoundError" in install_cell_source()
        True
    """
    return (
        "# Colab: install the package if it is missing (this cell's output is hidden in the book).\n"
        "# Generated from metalearn_nlp/_install.py by .ci/sync_install_cells.py: edit those, not this cell.\n"
        "try:\n"
        "    import metalearn_nlp\n"
        "except ModuleNotFoundError:\n"
        f'    %pip install --quiet "{spec}"\n'
        "    import metalearn_nlp"
    )
