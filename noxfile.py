"""Test sessions: the core alone, each plugin alone with the core, everything together, and lint."""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "core", "datasets", "native", "sprint", "tf", "theano", "all"]

PLUGINS = ("datasets", "native", "sprint", "tf", "theano")
#: extras a plugin's own session installs (frameworks it binds to; never another returnn plugin)
EXTRAS = {"native": "[tf,theano]"}
PYTEST = ("pytest", "-q", "-n", "2", "-p", "no:cacheprovider", "-o", "console_output_style=classic")  # CI has 2 cores
ENV = {"RETURNN_CACHE_DIR": os.path.join(os.path.dirname(os.path.abspath(__file__)), ".test-cache"),
       "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def _install(session: nox.Session, *plugins: str) -> None:
    session.install(".", *(f"./plugins/returnn_{p}{EXTRAS.get(p, '')}" for p in plugins), "pytest>=7", "pytest-xdist>=3")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over everything."""
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session
def core(session: nox.Session) -> None:
    """The core with no plugin installed."""
    _install(session)
    session.run(*PYTEST, "tests/core", *session.posargs, env=ENV)


#: the public RETURNN whose HDF files ours must read, and which must read ours (tests/datasets)
PUBLIC_RETURNN = "returnn==1.20261022.211313"


def _public_returnn(session: nox.Session) -> dict[str, str]:
    """Unpack the public RETURNN from PyPI beside the venv (not installed into it: its modules stay apart)."""
    target = os.path.join(session.virtualenv.location, "public-returnn")
    if not os.path.isdir(os.path.join(target, "returnn")):
        session.install("--no-deps", "--target", target, PUBLIC_RETURNN)
    return {"RETURNN_PUBLIC_PATH": target}


def _plugin_session(name: str):
    def run(session: nox.Session) -> None:
        _install(session, name)
        session.run("python", "tests/isolation/check_plugin_alone.py", name, env=ENV)
        extra_env = _public_returnn(session) if name == "datasets" else {}
        session.run(*PYTEST, f"tests/{name}", *session.posargs, env={**ENV, **extra_env})

    run.__doc__ = f"returnn-{name} alone with the core (proves it imports no other plugin)."
    run.__name__ = name
    return nox.session(name=name)(run)


for _name in PLUGINS:
    globals()[_name] = _plugin_session(_name)


@nox.session(name="all")
def all_plugins(session: nox.Session) -> None:
    """Everything installed together: end-to-end tests across plugins."""
    _install(session, *PLUGINS)
    session.run("returnn", "--list-plugins", env=ENV)
    session.run(*PYTEST, "tests/e2e", *session.posargs, env=ENV)
