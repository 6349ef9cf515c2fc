"""moto's own test suites, run in-process with ferry's extension loaded, to catch the extension breaking moto.

``scripts/moto-suites`` runs ``python -m moto_suites``: it fetches the test sources of the pinned moto
(fetch.py), runs the chosen suites with the extension (plugin.py) and again, on plain moto, only the tests
that failed (runner.py), and compares the outcome with the AWS-faithful deviations listed in the emulator's
README (deviations.py).
"""
