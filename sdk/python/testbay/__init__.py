"""Talk to the Testbay console from a task while it runs.

Inside a Testbay task (``TESTBAY_REPORTER`` is set) every call goes to the run's reporter
socket; the console answers each one and a refusal raises :class:`ReporterError` with the
console's message. Outside Testbay every call does nothing, after one warning, so the
same script runs on a desk.

    import testbay

    with testbay.section("boot", description="power on and wait for the prompt"):
        with testbay.step("power on"):
            ...
        testbay.measure("boot_time", 12.3, units="s", high=30)
    testbay.set_result("Passed")
"""

from testbay.reporter import (
    ReporterError,
    Section,
    attach,
    detail,
    extra,
    measure,
    prompt,
    section,
    set_result,
    step,
)

__all__ = [
    "ReporterError",
    "Section",
    "attach",
    "detail",
    "extra",
    "measure",
    "prompt",
    "section",
    "set_result",
    "step",
]
