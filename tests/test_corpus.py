"""Cost functions written the way their authors write them (tests/corpus/*.grad, issue 10):
softmax and SVM losses with `arange(N), y` pairs and subscript updates, embeddings and word2vec
with `E[idx]`, Cox with `logcumsumexp`, negative binomial and Poisson with `gammaln`, causal
attention with `split`, `C // H`, `tril` and `-inf`, a GP with `cho_solve`, Rosenbrock with
`x[:N - 1]`, strided and dimension-expression shapes, shadowed built-ins, module constants.

Every file compiles with all functions and the Hessian, and `gradgen check` (every
derivative against two-sided finite differences on random inputs, JVP against VJP, the
Hessian against the HVP) passes on each."""

from __future__ import annotations

from pathlib import Path

import pytest
from clirun import run

import gradgen

CORPUS = sorted((Path(__file__).resolve().parent / "corpus").glob("*.grad"))


@pytest.fixture(scope="module", autouse=True)
def compile_each_file_once():
    """Each file is compiled once for this file's tests: `gradgen check` (in-process)
    compiles it with the options test_compiles_as_written used (all functions and the
    Hessian), and gets that compilation's module (one compile checked two ways; about
    2 s of the suite). Only here: nothing in this file compiles twice to compare."""
    from gradgen import checking, compiler

    modules: dict = {}
    original = compiler.compile_module

    def once(text, filename, options):
        key = (text, filename, options)
        if key not in modules:
            modules[key] = original(text, filename, options)
        return modules[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(compiler, "compile_module", once)
        mp.setattr(checking, "compile_module", once)
        yield


def test_the_corpus_is_there():
    assert len(CORPUS) >= 20


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_compiles_as_written(path):
    text = gradgen.compile_source(path.read_text(encoding="utf-8"), filename=path.name,
                                  hessian=True)
    assert "_hessian(" in text and "_hvp(" in text


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_every_derivative_agrees_with_finite_differences(path):
    result = run("check", path.name, cwd=path.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("all agree"), result.stdout
