"""The runners' adaptation to Beam, guarded: the version guard, the one private
FnApiRunner attribute the zygote runner intercepts, and a runner package that
names no application module. An upgrade of Beam fails here, not deep in a build.
"""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipelines.errors import UsageError
from pipelines.runners import beam_version, local, worker_zygote
from tests.pipeline_util import ROOT

FAKE_COMMAND = "exec /bin/false corpusflow-test-zygote"


def test_pinned_beam_is_the_tested_one():
    pins = set(re.findall(r"apache-beam(?:\[\w+\])?==([\w.]+)", (ROOT / "setup.py").read_text()))
    assert pins == {beam_version.TESTED_BEAM_VERSIONS[-1]}
    assert beam.__version__ in beam_version.TESTED_BEAM_VERSIONS
    beam_version.check_beam_version("this test")  # the installed Beam passes


def test_untested_beam_is_refused_in_one_line():
    with pytest.raises(UsageError) as e:
        beam_version.check_beam_version("--runner X", "or use another runner", version="2.78.0")
    assert isinstance(e.value, beam_version.UntestedBeamError)
    assert str(e.value) == ("--runner X is tested with apache-beam 2.77.0 only and this is "
                            "2.78.0: install apache-beam==2.77.0 or use another runner")


def test_zygote_runner_refuses_an_untested_beam(monkeypatch):
    monkeypatch.setattr(beam, "__version__", "2.78.0")
    with pytest.raises(beam_version.UntestedBeamError) as e:
        local.ZygoteFnApiRunner()
    msg = str(e.value)
    assert "\n" not in msg and "2.78.0" in msg and f"{worker_zygote.ENV_SWITCH}=0" in msg
    # The stock runner needs no private attribute: in_memory runs are not refused.
    assert type(local.local_runner(PipelineOptions())) is FnApiRunner


def test_fn_api_runner_still_has_the_adapted_attribute():
    # Set per instance in __init__ (so a subclass property intercepts it), never
    # a class attribute; run_pipeline assigns it.
    attr = local.ADAPTED_ATTRIBUTE
    assert attr in vars(FnApiRunner())
    assert not hasattr(FnApiRunner, attr)
    assert f"self.{attr} =" in inspect.getsource(FnApiRunner.run_pipeline)


class _FakeZygote:
    command = FAKE_COMMAND


class _Probe(local.ZygoteFnApiRunner):
    """Records the pipeline proto Beam would run, instead of running it."""

    def run_via_runner_api(self, pipeline_proto, options):
        self.envs = [(e.urn, e.payload.decode()) for e in
                     pipeline_proto.components.environments.values()]
        return "not run"


@pytest.mark.parametrize("mode,swapped", [("multi_processing", True), ("in_memory", False)])
def test_zygote_command_reaches_the_pipeline_proto(monkeypatch, mode, swapped):
    monkeypatch.setattr(worker_zygote, "shared", lambda preload=(): _FakeZygote())
    runner = _Probe(preload=("json",))
    opts = PipelineOptions(direct_running_mode=mode, direct_num_workers=2)
    p = beam.Pipeline(runner=runner, options=opts)
    _ = p | beam.Create([1, 2]) | beam.Map(str)
    assert runner.run_pipeline(p, opts) == "not run"
    commands = [payload for urn, payload in runner.envs if "subprocess" in urn]
    if swapped:
        # Beam's stock worker command was replaced by the zygote's, nothing else changed.
        assert commands == [FAKE_COMMAND] and runner._swapped
        assert not any(worker_zygote.STOCK_WORKER_MODULE in pl for _, pl in runner.envs)
    else:
        assert commands == [] and not runner._swapped


def test_bad_preload_names_are_refused():
    with pytest.raises(ValueError, match="not module names"):
        local.ZygoteFnApiRunner(preload=("pipelines.stages", "no such; module"))
    assert local.ZygoteFnApiRunner(preload=["a.b", "c"]).preload == ("a.b", "c")


def test_runner_package_imports_no_application_module():
    code = ("import json, sys\n"
            "import pipelines.runners.choose, pipelines.runners.zygote_server\n"
            "print(json.dumps(sorted(m for m in sys.modules\n"
            "    if m.split('.')[0] in ('pipelines', 'corpusflow', 'vocab', 'trainer_hooks'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=120).stdout
    mods = json.loads(out)
    assert [m for m in mods if not m.startswith("pipelines.runners")] == ["pipelines",
                                                                          "pipelines.errors"]
    assert "pipelines.runners.dask_runner" not in mods  # imported only for --runner DaskRunner
