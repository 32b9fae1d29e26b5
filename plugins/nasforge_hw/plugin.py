"""The ``nasforge_hw`` plugin: hardware cost models that measure any space's built subnet.

Registered names (each imports torch only when built):

- ``hw.macs`` — ``macs_m`` and ``params_m``: multiply-accumulates at batch size 1 and
  parameters, counted on the model built (:mod:`nasforge_hw.counting`);
- ``hw.latency`` — ``latency_ms``: median of timed forwards after warm-up on the trial's
  device (:mod:`nasforge_hw.latency`);
- ``hw.memory`` — ``peak_memory_mb``: weights + input + peak live activations of one
  inference (:mod:`nasforge_hw.memory`);
- ``hw.latency_lut`` — ``latency_lut_ms``: latency summed from a per-unit look-up table
  kept in the run directory (:mod:`nasforge_hw.lut`);

and the command ``nasforge lut`` (:mod:`nasforge_hw.commands`), which builds a look-up table
and reports its error against measured latency.

They work with every space whose arch has a supernet to extract the subnet from; a tabular
space (no model) is rejected when measured. The input shape comes from the space's
``input_shape(arch)``, else the ``input_shape`` option, else the task's.
"""

from __future__ import annotations

from nasforge import RegisterCommand, RegisterHardware, hookimpl, lazy


@hookimpl
def register_hardware(register: RegisterHardware) -> None:
    register("hw.macs", lazy("nasforge_hw.counting:MacsModel", "MACs and parameters"))
    register("hw.latency", lazy("nasforge_hw.latency:LatencyModel", "measured median latency"))
    register("hw.memory", lazy("nasforge_hw.memory:MemoryModel", "peak inference memory"))
    register(
        "hw.latency_lut",
        lazy("nasforge_hw.lut:LatencyLutModel", "latency from a per-unit look-up table"),
    )


@hookimpl
def register_commands(register: RegisterCommand) -> None:
    from .commands import lut_arguments, run_lut

    register(
        "lut",
        run_lut,
        arguments=lut_arguments,
        help="build the latency look-up table of an experiment's space and report its error "
        "against measured latency",
    )
