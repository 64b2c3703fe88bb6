"""The compiled part of mmrecipe: everything else (metadata, dependencies, package data) is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # the Gopher repetition filter's n-gram counts (mmrecipe.text.fineweb_rules) and spaCy's words of a text
        # (mmrecipe.text.words): the hot loops of the FineWeb rules. Building them needs a C compiler.
        Extension("mmrecipe.text._word_ngrams", ["mmrecipe/text/_word_ngrams.c"], extra_compile_args=["-O2"]),
        Extension("mmrecipe.text._words", ["mmrecipe/text/_words.c"], extra_compile_args=["-O2"]),
    ]
)
