"""The Examples in the docstrings run and print what they show (doctest).

featurelib's functions each carry a short runnable example (numpydoc's Examples section), as
librosa's do; an example that no longer runs, or prints something else, misleads the reader who
copies it. A docstring that doctest cannot parse (a ``\\n`` inside a non-raw docstring) fails
here too.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import featurelib
import jobs


def _modules() -> list[str]:
    names = []
    for package in (featurelib, jobs):
        names.append(package.__name__)
        names += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    return names


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"
