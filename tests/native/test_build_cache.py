"""The compile cache: content keys, reuse, one compile across parallel processes, clear compiler errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from returnn_native.build_cache import BuildSpec, build_library
from returnn_native.errors import NativeCompileError, NativeOpError
from returnn_native.toolchain import CXX_ENV, find_cxx

# Enough template work that the compile takes a noticeable moment (so parallel builders really overlap).
SOURCE = textwrap.dedent(
    """
    #include <map>
    #include <regex>
    #include <string>
    extern "C" int answer(void) {
      std::map<std::string, int> m{{"a", 40}};
      return std::regex_match("ab", std::regex("a.")) ? m["a"] + 2 : 0;
    }
    """
)


def _spec(tmp_path, source: str = SOURCE, flags: tuple[str, ...] = ("-O1",)) -> BuildSpec:
    src = tmp_path / "answer.cc"
    src.write_text(source)
    return BuildSpec(name="answer", sources=(str(src),), compiler=find_cxx(), flags=flags)


def test_builds_once_then_reuses(tmp_path) -> None:
    import ctypes

    spec = _spec(tmp_path)
    first = build_library(spec, root=str(tmp_path / "cache"))
    assert first.compiled and os.path.exists(first.path)
    assert ctypes.CDLL(first.path).answer() == 42
    again = build_library(spec, root=str(tmp_path / "cache"))
    assert (again.path, again.compiled) == (first.path, False)


def test_key_covers_source_flags_and_compiler(tmp_path) -> None:
    spec = _spec(tmp_path)
    key = spec.key()
    assert _spec(tmp_path, flags=("-O2",)).key() != key
    assert _spec(tmp_path, source=SOURCE + "\n// changed\n").key() != key
    other = BuildSpec(
        name="answer", sources=spec.sources, compiler=type(spec.compiler)("/x/g++", "g++ 0.1"), flags=spec.flags
    )
    assert other.key() != key


def test_broken_source_reports_compiler_log(tmp_path) -> None:
    spec = _spec(tmp_path, source='extern "C" int answer(void) { return undefined_thing; }\n')
    with pytest.raises(NativeCompileError) as info:
        build_library(spec, root=str(tmp_path / "cache"))
    msg = str(info.value)
    assert "answer" in msg and "undefined_thing" in msg and "build.log" in msg
    assert not any(p.endswith(".so") for _, _, files in os.walk(tmp_path / "cache") for p in files)


def test_missing_compiler_names_the_variable(monkeypatch) -> None:
    monkeypatch.setenv(CXX_ENV, "/nonexistent/g++")
    with pytest.raises(NativeOpError, match=CXX_ENV):
        find_cxx()


def test_parallel_processes_compile_once(tmp_path) -> None:
    _spec(tmp_path)  # writes the source
    script = textwrap.dedent(
        f"""
        import sys
        from returnn_native.build_cache import BuildSpec, build_library
        from returnn_native.toolchain import find_cxx
        spec = BuildSpec(name="answer", sources=({str(tmp_path / "answer.cc")!r},), compiler=find_cxx(),
                         flags=("-O1",))
        print("COMPILED" if build_library(spec, root={str(tmp_path / "shared")!r}).compiled else "CACHED")
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sorted(outs) == ["CACHED", "CACHED", "COMPILED"]
