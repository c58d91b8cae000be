"""Support code of the fault matrix (``make faults``): the real recording, own servers, reference
runs and the per-case result lines that go to ``docs/reliability.md``.
"""
