"""Test sessions: the core alone, each plugin alone with the core, everything together, and lint."""

from __future__ import annotations

import os
import shutil
import sys

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "core", "datasets", "native", "sprint", "tf", "theano", "all", "wheels"]

PLUGINS = ("datasets", "native", "sprint", "tf", "theano")
#: extras a plugin's own session installs (frameworks it binds to; never another returnn plugin)
EXTRAS = {"native": "[tf,theano]"}
#: first-party plugins a plugin depends on for users (so it can train out of the box), not for its imports
REQUIRES = {"tf": ("datasets",), "theano": ("datasets",)}
PYTEST = ("pytest", "-q", "-n", "2", "-p", "no:cacheprovider", "-o", "console_output_style=classic")  # CI has 2 cores
# TensorFlow's log level is left to returnn_tf (quiet below log_verbosity 5), as a user gets it
ENV = {"RETURNN_CACHE_DIR": os.path.join(os.path.dirname(os.path.abspath(__file__)), ".test-cache"),
       "PYTHONUNBUFFERED": "1"}


def _install(session: nox.Session, *plugins: str, core: str = ".") -> None:
    session.install(core, *(f"./plugins/returnn_{p}{EXTRAS.get(p, '')}" for p in plugins), "pytest>=7", "pytest-xdist>=3",
                    "hypothesis>=6")


def _uninstall(session: nox.Session, *dists: str) -> None:
    if not dists:
        return
    if session.venv_backend == "uv":
        session.run("uv", "pip", "uninstall", "--python", _python(session.virtualenv.location), *dists, external=True)
    else:
        session.run("python", "-m", "pip", "uninstall", "-y", *dists)


def _python(venv: str) -> str:
    return os.path.join(venv, "bin", "python")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over everything."""
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session
def core(session: nox.Session) -> None:
    """The core with no plugin installed (with its optional matplotlib and argcomplete, for plot and completion)."""
    _install(session, core=".[plot,completion]")
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
        _install(session, name, *REQUIRES.get(name, ()))
        # the dependency is for users; without it installed, the checks below prove the plugin imports none
        _uninstall(session, *(f"returnn-{dep}" for dep in REQUIRES.get(name, ())))
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


DISTRIBUTIONS = (".", *(f"plugins/returnn_{p}" for p in PLUGINS))


@nox.session
def wheels(session: nox.Session) -> None:
    """Build every sdist and wheel, check them with twine, then train the demo from a wheel install of core + tf.

    The fresh venv gets only ``returnn-core returnn-tf`` (their dependencies from the wheelhouse and the index)
    and runs with no compiler on PATH, as a new user without g++ would.
    """
    session.install("build", "twine")
    tmp = session.create_tmp()
    wheelhouse = os.path.join(tmp, "wheelhouse")
    shutil.rmtree(wheelhouse, ignore_errors=True)
    installer = ("--installer", "uv") if session.venv_backend == "uv" else ()
    for dist in DISTRIBUTIONS:
        session.run("python", "-m", "build", *installer, "--outdir", wheelhouse, dist, silent=True)
    built = sorted(os.path.join(wheelhouse, f) for f in os.listdir(wheelhouse))
    session.run("twine", "check", "--strict", *built)

    venv = os.path.join(tmp, "user-venv")
    shutil.rmtree(venv, ignore_errors=True)
    wheel = {f.split("-")[0]: os.path.join(wheelhouse, f) for f in os.listdir(wheelhouse) if f.endswith(".whl")}
    wanted = (wheel["returnn_core"], wheel["returnn_tf"])
    uv = shutil.which("uv")
    if uv:  # uv reuses the TensorFlow the tf session already downloaded into its cache
        session.run(uv, "venv", "--quiet", "--python", sys.executable, venv, external=True)
        session.run(uv, "pip", "install", "--quiet", "--python", _python(venv), "--find-links", wheelhouse, *wanted,
                    external=True)
    else:
        session.run(sys.executable, "-m", "venv", venv, external=True)
        session.run(_python(venv), "-m", "pip", "install", "--quiet", "--find-links", wheelhouse, *wanted, external=True)
    session.run(_python(venv), os.path.abspath("tests/install/check_user_install.py"),
                os.path.abspath("demos/demo-12ax.config"), env={"RETURNN_CACHE_DIR": os.path.join(tmp, "cache")},
                external=True)
