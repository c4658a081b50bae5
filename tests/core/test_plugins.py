"""The plugin system: registration, lazy targets, isolation, conflicts, compatibility, helpful errors."""

from __future__ import annotations

import inspect
import json
import sys

import pytest
from fake_dist import install_toy_plugin, make_distribution, run_returnn

from returnn_core.errors import PluginConflictError, PluginError, PluginUnavailableError, UnknownNameError
from returnn_core.plugin import EXTENSION_POINTS, PluginManager, Registry, hookimpl
from returnn_core.plugin import _spec as spec_module


class LayerPlugin:
    """A plugin registering one layer for a backend, as a third party would."""

    def __init__(self, target: object = "json:JSONDecoder") -> None:
        self.target = target

    @hookimpl
    def returnn_register_layers(self, registry):
        registry.register("mylayer", self.target, backend="tf", aliases=("my",))


def test_plugin_registered_at_test_time_is_used(manager):
    backend_cls = manager.backends.get("toy")
    assert backend_cls.name == "toy"
    info = manager.plugins["toy"]
    assert info.status == "loaded"
    assert info.provides == {"backends": ["toy"], "datasets": ["ToyDataset"], "output_writers": ["npz"]}


def test_lazy_target_imported_on_first_use(tmp_path, monkeypatch):
    (tmp_path / "lazy_target_mod.py").write_text("class Layer:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    pm = PluginManager(disabled=())
    pm.register(LayerPlugin("lazy_target_mod:Layer"), "lazy")
    assert "lazy_target_mod" not in sys.modules
    layer = pm.layers.get("my", backend="tf")
    assert layer.__name__ == "Layer" and "lazy_target_mod" in sys.modules


def test_broken_target_names_plugin_and_target():
    pm = PluginManager(disabled=())
    pm.register(LayerPlugin("no_such_module_xyz:Layer"), "broken-target", distribution="returnn-broken")
    with pytest.raises(PluginError, match=r"mylayer.*returnn-broken.*no_such_module_xyz:Layer"):
        pm.layers.get("mylayer", backend="tf")


def test_conflicting_plugins_both_stay_loaded_and_the_name_is_ambiguous():
    pm = PluginManager(disabled=())
    pm.register(LayerPlugin("json:JSONDecoder"), "first", distribution="returnn-first")
    info = pm.register(LayerPlugin("json:JSONEncoder"), "second", distribution="returnn-mylayers")
    assert info.status == "loaded" and pm.plugins["first"].status == "loaded"
    assert info.provides == {"layers": ["mylayer@tf"]}
    for name in ("mylayer", "my"):  # the alias is ambiguous too
        with pytest.raises(PluginConflictError) as exc:
            pm.layers.get(name, backend="tf")
        assert str(exc.value) == (
            f"layer class {name!r} for backend 'tf' is ambiguous: registered by returnn-first and by returnn-mylayers; "
            "pick one with prefer_plugins = ['first'] in the config, or disable the other: RETURNN_DISABLE_PLUGINS=second"
        )
    assert pm.conflicts() == [
        "layer class my@tf: registered by returnn-first and by returnn-mylayers (ambiguous until one is "
        "preferred with prefer_plugins or disabled with RETURNN_DISABLE_PLUGINS)",
        "layer class mylayer@tf: registered by returnn-first and by returnn-mylayers (ambiguous until one is "
        "preferred with prefer_plugins or disabled with RETURNN_DISABLE_PLUGINS)",
    ]
    pm.prefer(["second"])
    assert pm.layers.get("mylayer", backend="tf").__name__ == "JSONEncoder"
    pm.prefer(["returnn-first"])
    assert pm.layers.get("my", backend="tf").__name__ == "JSONDecoder"
    pm.layers.remove_plugin("returnn-first")
    pm.prefer([])
    assert pm.layers.get("mylayer", backend="tf").__name__ == "JSONEncoder" and not pm.conflicts()


def test_conflict_raises_in_strict_mode_and_on_direct_registration():
    pm = PluginManager(strict=True, disabled=())
    pm.register(LayerPlugin("json:JSONDecoder"), "first")
    with pytest.raises(PluginError, match="registered by first and by second"):
        pm.register(LayerPlugin("json:JSONEncoder"), "second")
    reg = Registry("layer class", per_backend=True)
    reg.register("x", "a:B", backend="tf", plugin="p1")
    reg.register("x", "a:B", backend="tf", plugin="p2")  # same target twice: no-op
    with pytest.raises(PluginConflictError, match="registered by p1 and by p3"):
        reg.register("x", "a:C", backend="tf", plugin="p3")


def test_plugin_failing_in_its_hook_is_recorded_and_rolled_back():
    class Half:
        @hookimpl
        def returnn_register_layers(self, registry):
            registry.register("halfway", "json:JSONDecoder", backend="tf")
            raise RuntimeError("boom while registering")

    pm = PluginManager(disabled=())
    info = pm.register(Half(), "half")
    assert info.status == "failed" and "boom while registering" in info.error
    assert "halfway" not in pm.layers
    assert pm.lr_controls.get("constant").__name__ == "ConstantLearningRate"  # host keeps working
    with pytest.raises(PluginError, match="boom"):
        PluginManager(strict=True, disabled=()).register(Half(), "half")


def test_plugin_with_unknown_hook_fails():
    class Typo:
        @hookimpl
        def returnn_register_layer(self, registry):  # missing 's'
            pass

    info = PluginManager(disabled=()).register(Typo(), "typo")
    assert info.status == "failed" and "returnn_register_layer" in info.error


def test_disabled_plugin_is_not_loaded():
    pm = PluginManager(disabled=("mine",))
    info = pm.register(LayerPlugin(), "mine")
    assert info.status == "disabled" and "mylayer" not in pm.layers


def test_unknown_name_lists_known_and_close_matches(manager):
    with pytest.raises(UnknownNameError) as exc:
        manager.datasets.get("ToyDatset")
    msg = str(exc.value)
    assert "unknown dataset class 'ToyDatset'" in msg and "did you mean 'ToyDataset'" in msg and "Known: ToyDataset" in msg


def test_unknown_name_points_to_the_plugin_to_install():
    pm = PluginManager(disabled=())
    with pytest.raises(UnknownNameError, match="layer class 'rec' for backend 'tf' needs the backend plugin 'tf': pip install returnn-tf"):
        pm.layers.get("rec", backend="tf")
    with pytest.raises(UnknownNameError, match="dataset class 'HDFDataset' needs plugin 'datasets': pip install returnn-datasets"):
        pm.datasets.get("HDFDataset")


def test_name_from_failed_or_disabled_plugin_reports_the_recorded_cause():
    pm = PluginManager(disabled=("sprint",))
    pm.register(object(), "sprint")

    class Broken:
        @hookimpl
        def returnn_register_datasets(self, registry):
            raise ImportError("libfoo.so missing")

    pm.register(Broken(), "datasets", distribution="returnn-datasets")
    with pytest.raises(PluginUnavailableError, match="returnn-datasets, which failed: ImportError: libfoo.so missing"):
        pm.datasets.get("HDFDataset")
    with pytest.raises(PluginUnavailableError, match="disabled by RETURNN_DISABLE_PLUGINS"):
        pm.datasets.get("ExternSprintDataset")


def test_only_other_backend_has_layer():
    pm = PluginManager(disabled=())
    pm.register(LayerPlugin(), "tfonly")
    with pytest.raises(UnknownNameError, match="only backend 'tf' has it"):
        pm.layers.get("mylayer", backend="mybackend")


def test_every_hook_spec_has_a_registry_and_is_exercised():
    """datasette-style: each hook spec is wired to a registry, and a plugin using all of them fills each one."""
    specs = {name for name, fn in inspect.getmembers(spec_module, inspect.isfunction) if name.startswith("returnn_")}
    assert specs == {hook for hook, _ in EXTENSION_POINTS.values()}

    class Everything:
        pass

    for kind, (hook, per_backend) in EXTENSION_POINTS.items():
        def impl(self, registry, _kind=kind, _pb=per_backend):
            registry.register(f"x_{_kind}", "json:dumps", backend="tf" if _pb else None)

        impl.__name__ = hook
        setattr(Everything, hook, hookimpl(impl))
    pm = PluginManager(disabled=())
    info = pm.register(Everything(), "everything")
    assert info.status == "loaded", info.error
    for kind, (_, per_backend) in EXTENSION_POINTS.items():
        assert pm.get(kind, f"x_{kind}", backend="tf" if per_backend else None) is json.dumps
    assert set(info.provides) == set(EXTENSION_POINTS)


# -- real entry points, discovered from installed distributions, in a subprocess ---------------------------------


GOOD = """
from returnn_core.plugin import hookimpl

@hookimpl
def returnn_register_datasets(registry):
    registry.register("GoodDataset", "good_plugin_mod:GoodDataset")

@hookimpl
def returnn_register_cli_tools(registry):
    registry.register("hello", "good_plugin_mod:hello", description="say hello")

def hello(argv):
    print("hello", *argv)
    return 3
"""


@pytest.fixture
def site(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "returnn-good", "good_plugin_mod", GOOD, requires=("returnn-core>=1,<2",), plugin_name="good")
    make_distribution(site, "returnn-broken", "broken_plugin_mod", "import does_not_exist_anywhere\n", plugin_name="broken")
    make_distribution(
        site, "returnn-future", "future_plugin_mod",
        "open(__file__ + '.imported', 'w').close()\n", requires=("returnn-core>=2",), plugin_name="future",
    )
    return site


def _plugins_json(result) -> dict[str, dict]:
    assert result.returncode == 0, result.stderr
    return {p["name"]: p for p in json.loads(result.stdout)}


def test_installed_plugins_good_broken_incompatible(site):
    plugins = _plugins_json(run_returnn(["--list-plugins", "--json"], site=site))
    assert plugins["good"]["status"] == "loaded"
    assert plugins["good"]["distribution"] == "returnn-good" and plugins["good"]["version"] == "1.0"
    assert plugins["good"]["provides"] == {"datasets": ["GoodDataset"], "cli_tools": ["hello"]}
    assert plugins["broken"]["status"] == "failed"
    assert "No module named 'does_not_exist_anywhere'" in plugins["broken"]["error"]
    assert plugins["future"]["status"] == "incompatible"
    assert "needs returnn-core>=2" in plugins["future"]["error"]
    assert not (site / "future_plugin_mod.py.imported").exists()  # incompatible code is never imported


def test_list_plugins_table_shows_failures_without_traceback(site):
    res = run_returnn(["--list-plugins"], site=site)
    assert res.returncode == 0
    assert "broken (failed): import of broken_plugin_mod failed: ModuleNotFoundError" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr


def test_disable_env_and_strict_env(site):
    plugins = _plugins_json(run_returnn(["--list-plugins", "--json"], site=site, env={"RETURNN_DISABLE_PLUGINS": "broken,good"}))
    assert plugins["broken"]["status"] == plugins["good"]["status"] == "disabled"
    res = run_returnn(["--list-plugins"], site=site, env={"RETURNN_PLUGINS_STRICT": "1"})
    assert res.returncode != 0 and "does_not_exist_anywhere" in res.stderr


def test_plugin_subcommand_is_dispatched(site):
    res = run_returnn(["hello", "a", "b"], site=site)
    assert res.returncode == 3 and res.stdout.strip() == "hello a b"
    res = run_returnn(["helo"], site=site)
    assert res.returncode == 2 and "did you mean 'hello'" in res.stderr
    assert "hello" in run_returnn(["--help"], site=site).stdout


# -- hostile plugins: sys.exit at import, a taken name, a failing hook, a slow import ------------------------------

CLAIMS_TOY_DATASET = """
from returnn_core.plugin import hookimpl

@hookimpl
def returnn_register_datasets(registry):
    registry.register("ToyDataset", "json:JSONDecoder")
"""

FAILS_IN_HOOK = """
from returnn_core.plugin import hookimpl

@hookimpl
def returnn_register_datasets(registry):
    registry.register("EvilDataset", "json:JSONDecoder")
    raise RuntimeError("evil hook")
"""


@pytest.fixture
def hostile_site(tmp_path):
    site = install_toy_plugin(tmp_path)
    make_distribution(site, "returnn-exits", "exits_mod", "import sys\nsys.exit(0)\n", plugin_name="exits")
    # "aaa" sorts before "toy": loaded first, it used to take ToyDataset and disable the whole toy plugin
    make_distribution(site, "returnn-aaa", "aaa_mod", CLAIMS_TOY_DATASET, plugin_name="aaa")
    make_distribution(site, "returnn-evil", "evil_mod", FAILS_IN_HOOK, plugin_name="evil")
    make_distribution(site, "returnn-ctrlc", "ctrlc_mod", "raise KeyboardInterrupt\n", plugin_name="ctrlc")
    cfg = tmp_path / "toy.config"
    cfg.write_text(
        "#!python\nbackend = 'toy'\n"
        f"model = {str(tmp_path / 'out' / 'model')!r}\n"
        "train = {'class': 'ToyDataset', 'num_seqs': 6}\n"
        "network = {'output': {'class': 'softmax', 'loss': 'ce', 'n_out': 2}}\nnum_epochs = 1\nlearning_rate = 0.5\n"
    )
    return site, str(cfg)


def test_hostile_plugins_are_isolated_and_reported(hostile_site):
    site, cfg = hostile_site
    res = run_returnn(["--list-plugins"], site=site)
    assert res.returncode == 0 and "Traceback" not in res.stdout + res.stderr
    out = " ".join(res.stdout.split())
    assert "exits (failed): import of exits_mod failed: SystemExit(0): the plugin called sys.exit" in out
    assert "evil (failed): RuntimeError: evil hook" in out
    assert "ctrlc (failed): import of ctrlc_mod failed: KeyboardInterrupt" in out  # no terminal: the plugin's doing
    assert ("conflict: dataset class ToyDataset: registered by returnn-aaa and by returnn-toy (ambiguous until one is "
            "preferred with prefer_plugins or disabled with RETURNN_DISABLE_PLUGINS)") in out
    plugins = _plugins_json(run_returnn(["--list-plugins", "--json"], site=site))
    assert plugins["toy"]["status"] == plugins["aaa"]["status"] == "loaded"
    assert plugins["toy"]["conflicts"] == plugins["aaa"]["conflicts"] and len(plugins["toy"]["conflicts"]) == 1

    # using the ambiguous name: one line naming both and how to choose
    res = run_returnn([cfg], site=site)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        "returnn: error: dataset class 'ToyDataset' is ambiguous: registered by returnn-aaa and by returnn-toy; pick "
        "one with prefer_plugins = ['aaa'] in the config, or disable the other: RETURNN_DISABLE_PLUGINS=toy"
    ]
    # the config picks one: the run trains (the plugin that called sys.exit does not end the command)
    res = run_returnn([cfg, "++prefer_plugins", "toy"], site=site)
    assert res.returncode == 0, res.stderr
    assert "epoch 1 score" in res.stdout
    # a name the failed plugin tried to register: its recorded error
    res = run_returnn([cfg, "++train", "{'class': 'EvilDataset'}"], site=site, env={"RETURNN_DISABLE_PLUGINS": "aaa"})
    assert res.stderr.strip().splitlines() == [
        "returnn: error: dataset class 'EvilDataset' comes from plugin returnn-evil, which failed: RuntimeError: evil hook"
    ]
    # a name nobody registered while a plugin failed at import: the failure is named as a possible cause
    res = run_returnn([cfg, "++train", "{'class': 'ExitsDataset'}"], site=site, env={"RETURNN_DISABLE_PLUGINS": "aaa"})
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "unknown dataset class 'ExitsDataset'" in res.stderr
    assert "plugin returnn-exits failed to load and may provide it: import of exits_mod failed: SystemExit(0)" in res.stderr


def test_slow_plugin_import_gets_a_line(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "returnn-slow", "slow_mod", "import time\ntime.sleep(2.1)\n", plugin_name="slow")
    res = run_returnn(["--list-plugins"], site=site)
    assert res.returncode == 0
    assert "slow (slow): importing slow_mod took 2." in " ".join(res.stdout.split())
    assert "(over 2 s, on every returnn command); keep its _hooks module cheap" in " ".join(res.stdout.split())
    assert "slow  " in res.stdout and "loaded" in res.stdout.split("slow  ", 1)[1].splitlines()[0]
